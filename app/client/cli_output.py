"""What every client command shares: consoles (stdout for results, stderr for messages and
spinners; colours only on a terminal), tables or ``--output json``, and error handling that
turns an API error into a message and exit code 1."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from .client import Client
from .errors import StratusError

P = ParamSpec("P")
T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    OutputFormat, typer.Option("--output", help="table for people, json for scripts")
]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name or id")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until it settles")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"stratus: {message}", markup=False)
    raise typer.Exit(code)


def handled(fn: Callable[P, T]) -> Callable[P, T]:
    """API errors, timeouts and Ctrl-C end the command with a message and exit code 1 (2 when
    the client is not configured)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except StratusError as exc:
            fail(str(exc), 2 if exc.code in ("no_api_key", "bad_config") else 1)
        except TimeoutError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return run


CLI_RETRIES = 3  # a person waits about 3 s, not 30, to hear that the server is down


def client() -> Client:
    return Client(retries=CLI_RETRIES)


def dump(value: BaseModel | Sequence[BaseModel] | Any) -> None:
    """JSON on stdout: an object for one resource, an array for a list."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    typer.echo(json.dumps(data, indent=2))


def print_table(rows: Iterable[Any], columns: Sequence[tuple[str, Callable[[Any], Any]]]) -> None:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for header, _ in columns:
        # Ids stay whole on one line, so they can be copied; the rest wraps if it must.
        is_id = header in ID_HEADERS
        table.add_column(header, no_wrap=is_id, min_width=36 if is_id else None)
    for row in rows:
        table.add_row(*("" if (v := get(row)) is None else str(v) for _, get in columns))
    # On a terminal, its width; piped, lines as long as they need.
    wide = out if out.is_terminal else Console(file=out.file, width=PIPED_WIDTH)
    wide.print(table)


def show(value: Any, output: OutputFormat, columns: Sequence[tuple[str, Any]]) -> None:
    """A resource or a list of them, as a table or as JSON."""
    if output is OutputFormat.json:
        dump(value)
    else:
        print_table(value if isinstance(value, list) else [value], columns)


def metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items()))


PIPED_WIDTH = 250
ID_HEADERS = frozenset({"ID", "SOURCE RUN", "MODEL VERSION"})
PROJECT_COLUMNS = [
    ("ID", lambda p: p.id),
    ("NAME", lambda p: p.name),
    ("BACKEND", lambda p: p.default_backend),
    ("DESCRIPTION", lambda p: p.description),
]
RUN_COLUMNS = [
    ("ID", lambda r: r.id),
    ("NAME", lambda r: r.name),
    ("BACKEND", lambda r: r.backend),
    ("STATUS", lambda r: r.status),
    ("CREATED", lambda r: r.created_at.strftime("%Y-%m-%d %H:%M")),
    ("METRICS", lambda r: metrics_text(r.final_metrics)),
]
MODEL_COLUMNS = [
    ("ID", lambda m: m.id),
    ("NAME", lambda m: m.name),
    ("VERSION", lambda m: m.version),
    ("SOURCE RUN", lambda m: m.source_run_id),
    ("METRICS", lambda m: metrics_text(m.metrics)),
]
DEPLOYMENT_COLUMNS = [
    ("ID", lambda d: d.id),
    ("NAME", lambda d: d.name),
    ("STATUS", lambda d: d.status),
    ("INSTANCES", lambda d: f"{d.current_instances}/{d.desired_instances}"),
    ("BOUNDS", lambda d: f"{d.min_instances}..{d.max_instances}"),
    ("MODEL VERSION", lambda d: d.model_version_id),
]
DECISION_COLUMNS = [
    ("WHEN", lambda d: d.created_at.strftime("%Y-%m-%d %H:%M:%S")),
    ("MODE", lambda d: d.mode),
    ("ACTION", lambda d: d.action),
    ("INSTANCES", lambda d: f"{d.previous_instances} -> {d.desired_instances}"),
    ("APPLIED", lambda d: "yes" if d.applied else "no"),
    ("REASON", lambda d: d.reason),
]
