"""The client's commands: ``stratus login``, ``projects``, ``runs``, ``models``, ``deploy``,
``deployments``, ``invoke`` and ``decisions``. Tables for people, ``--output json`` for scripts;
messages and spinners go to stderr, so stdout stays parseable. Exit 0 only on success."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from . import config as config_mod
from .client import Client
from .errors import StratusError
from .models import Deployment, Run

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


def _fail(message: str, code: int = 1) -> NoReturn:
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
            _fail(str(exc), 2 if exc.code in ("no_api_key", "bad_config") else 1)
        except TimeoutError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return run


CLI_RETRIES = 3  # a person waits about 3 s, not 30, to hear that the server is down


def client() -> Client:
    return Client(retries=CLI_RETRIES)


def _dump(value: BaseModel | Sequence[BaseModel] | Any) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    typer.echo(json.dumps(data, indent=2))


def _table(rows: Iterable[Any], columns: Sequence[tuple[str, Callable[[Any], Any]]]) -> None:
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


def _show(value: Any, output: OutputFormat, columns: Sequence[tuple[str, Any]]) -> None:
    if output is OutputFormat.json:
        _dump(value)
    else:
        _table(value if isinstance(value, list) else [value], columns)


def _metrics_text(metrics: dict[str, float]) -> str:
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
    ("METRICS", lambda r: _metrics_text(r.final_metrics)),
]
MODEL_COLUMNS = [
    ("ID", lambda m: m.id),
    ("NAME", lambda m: m.name),
    ("VERSION", lambda m: m.version),
    ("SOURCE RUN", lambda m: m.source_run_id),
    ("METRICS", lambda m: _metrics_text(m.metrics)),
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

# --- login ---------------------------------------------------------------------------------


@handled
def login(
    url: Annotated[str, typer.Option("--url", help="The Stratus server")],
    key: Annotated[str, typer.Option("--key", help="Your API key")],
) -> None:
    """Check the key against the server and save both to the config file (mode 0600)."""
    with Client(url=url, api_key=key, retries=1) as probe:
        probe.whoami()
    path = config_mod.save(url, key)
    err.print(f"Logged in to {url.rstrip('/')}; saved to {path} (mode 0600).", markup=False)
    err.print("STRATUS_URL and STRATUS_API_KEY still take precedence when set.", markup=False)


# --- projects ------------------------------------------------------------------------------

projects_cli = typer.Typer(help="Projects.", no_args_is_help=True)


@projects_cli.command("ls")
@handled
def projects_ls(output: Output = OutputFormat.table) -> None:
    """The projects your key can see."""
    with client() as c:
        _show(c.projects.list(), output, PROJECT_COLUMNS)


@projects_cli.command("create")
@handled
def projects_create(
    name: str,
    description: Annotated[str, typer.Option(help="What the project is for")] = "",
    output: Output = OutputFormat.table,
) -> None:
    """Create a project (you become its owner)."""
    with client() as c:
        _show(c.projects.create(name, description), output, PROJECT_COLUMNS)


# --- runs ----------------------------------------------------------------------------------

runs_cli = typer.Typer(help="Training runs.", no_args_is_help=True)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            _fail(f"{what} takes KEY=VALUE, not {value!r}", 2)
        pairs[key] = rest
    return pairs


def _hyperparameter(text: str) -> str | int | float | bool:
    """``--hp epochs=5`` sends 5, ``lr=0.1`` 0.1, ``shuffle=true`` true, anything else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _follow(c: Client, run: Run, to_stderr: bool) -> Run:
    """Print the run's log as it grows; then the run as it ended."""
    with err.status(f"run {run.id}: {run.status}, waiting for its log ...") as status:
        for line in c.runs.logs(run.id, follow=True):
            status.stop()
            (err if to_stderr else out).print(line, markup=False, highlight=False)
    # The log can be read out before the backend's status says the run has ended.
    with err.status(f"run {run.id}: waiting for its final status ..."):
        return c.runs.wait(run.id, poll_s=1.0)


def _ended(run: Run, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        _dump(run)
    else:
        err.print(f"run {run.id} {run.status}", markup=False)
        if run.failure_reason:
            err.print(f"reason: {run.failure_reason}", markup=False)
        if run.final_metrics:
            out.print(_metrics_text(run.final_metrics), markup=False)
    if run.status != "completed":
        raise typer.Exit(1)


@runs_cli.command("submit")
@handled
def runs_submit(
    directory: Annotated[
        Path, typer.Argument(help="The code to run", exists=True, file_okay=False)
    ],
    project: ProjectOpt,
    entrypoint: Annotated[str, typer.Option("--entrypoint", "-e", help="Script in DIRECTORY")],
    hp: Annotated[
        list[str] | None, typer.Option("--hp", help="Hyperparameter KEY=VALUE (repeat it)")
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="NAME=REGEX scraped from the log (repeat it)"),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Default: the project's")] = None,
    instance_type: Annotated[str | None, typer.Option(help="e.g. ml.m5.xlarge")] = None,
    instance_count: Annotated[int | None, typer.Option(min=1)] = None,
    name: Annotated[str | None, typer.Option(help="Default: the directory's name")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the log; exit 0 only if the run completes")
    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Pack DIRECTORY (minus .git, virtualenvs, caches and .stratusignore), upload it, run it."""
    hyperparameters = {k: _hyperparameter(v) for k, v in _pairs(hp, "--hp").items()}
    with client() as c:
        with err.status(f"Packing and uploading {directory} ..."):
            run = c.runs.submit(
                project,
                directory,
                entrypoint,
                name=name,
                hyperparameters=hyperparameters,
                metrics=_pairs(metric, "--metric") or None,
                backend=backend,
                instance_type=instance_type,
                instance_count=instance_count,
            )
        bundle = run.spec.get("code_bundle_id")
        err.print(f"{directory} uploaded as code bundle {bundle}; run {run.id}", markup=False)
        if not wait:
            _show(run, output, RUN_COLUMNS)
            return
        err.print("Following its log (Ctrl-C stops following, not the run).", markup=False)
        _ended(_follow(c, run, output is OutputFormat.json), output)


@runs_cli.command("ls")
@handled
def runs_ls(
    project: ProjectOpt,
    status: Annotated[str | None, typer.Option(help="Only runs in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 50,
    output: Output = OutputFormat.table,
) -> None:
    """A project's runs, newest first."""
    with client() as c:
        _show(c.runs.list(project, status=status, limit=limit), output, RUN_COLUMNS)


@runs_cli.command("get")
@handled
def runs_get(run_id: str, output: Output = OutputFormat.table) -> None:
    """One run."""
    with client() as c:
        _show(c.runs.get(run_id), output, RUN_COLUMNS)


@runs_cli.command("logs")
@handled
def runs_logs(
    run_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the run ends")] = False,
) -> None:
    """The run's log (script output of its job)."""
    with client() as c:
        for line in c.runs.logs(run_id, follow=follow):
            out.print(line, markup=False, highlight=False)


@runs_cli.command("wait")
@handled
def runs_wait(
    run_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Wait for the run to end; exit 0 only if it completed."""
    with client() as c, err.status(f"Waiting for run {run_id} ..."):
        run = c.runs.wait(run_id, timeout=timeout)
    _ended(run, output)


@runs_cli.command("stop")
@handled
def runs_stop(run_id: str, output: Output = OutputFormat.table) -> None:
    """Ask the run to stop."""
    with client() as c:
        _show(c.runs.stop(run_id), output, RUN_COLUMNS)


# --- models --------------------------------------------------------------------------------

models_cli = typer.Typer(help="Model versions.", no_args_is_help=True)


@models_cli.command("ls")
@handled
def models_ls(
    project: ProjectOpt,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    output: Output = OutputFormat.table,
) -> None:
    """A project's model versions, newest first."""
    with client() as c:
        _show(c.models.list(project, limit=limit), output, MODEL_COLUMNS)


@models_cli.command("get")
@handled
def models_get(model_version_id: str, output: Output = OutputFormat.table) -> None:
    """One model version."""
    with client() as c:
        _show(c.models.get(model_version_id), output, MODEL_COLUMNS)


@models_cli.command("download")
@handled
def models_download(
    model_version_id: str,
    to: Annotated[Path | None, typer.Option("--output-file", "-o", help="Where to save it")] = None,
) -> None:
    """Download the model version's artifact; prints the file's path."""
    with client() as c, err.status("Downloading ..."):
        path = c.models.download(model_version_id, to)
    typer.echo(path)


# --- deployments ---------------------------------------------------------------------------

deployments_cli = typer.Typer(
    help="Deployments (models served as endpoints).", no_args_is_help=True
)


def _settle(c: Client, deployment: Deployment, timeout: float | None) -> Deployment:
    with err.status(f"Waiting for deployment {deployment.name} ...") as status:
        settled = c.deployments.wait(deployment.id, timeout=timeout)
        status.stop()
    if settled.status == "failed":
        _fail(f"deployment {settled.id} failed: {settled.status_reason}")
    return settled


@handled
def deploy(
    model_version_id: str,
    name: Annotated[str, typer.Option("--name", help="Deployment name (unique in the project)")],
    instances: Annotated[int, typer.Option(min=1, help="Instances to start with")] = 1,
    max_instances: Annotated[int | None, typer.Option(min=1)] = None,
    slo_ms: Annotated[
        float | None, typer.Option(help="p95 latency target; turns the optimizer on")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Default: the project's")] = None,
    instance_type: Annotated[str | None, typer.Option()] = None,
    wait: WaitOpt = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Deploy a model version as an endpoint."""
    with client() as c:
        deployment = c.deployments.create(
            model_version_id,
            name,
            instances=instances,
            max_instances=max_instances,
            slo_ms=slo_ms,
            optimizer=True if slo_ms is not None else None,
            backend=backend,
            instance_type=instance_type,
        )
        if wait:
            deployment = _settle(c, deployment, timeout)
        _show(deployment, output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("ls")
@handled
def deployments_ls(
    project: ProjectOpt,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    output: Output = OutputFormat.table,
) -> None:
    """A project's deployments, newest first."""
    with client() as c:
        _show(c.deployments.list(project, limit=limit), output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("get")
@handled
def deployments_get(deployment_id: str, output: Output = OutputFormat.table) -> None:
    """One deployment."""
    with client() as c:
        _show(c.deployments.get(deployment_id), output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("scale")
@handled
def deployments_scale(
    deployment_id: str,
    instances: Annotated[int, typer.Argument(min=1, help="Desired instance count")],
    wait: WaitOpt = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Set the desired instance count."""
    with client() as c:
        deployment = c.deployments.scale(deployment_id, instances)
        if wait:
            deployment = _settle(c, deployment, timeout)
        _show(deployment, output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("delete")
@handled
def deployments_delete(
    deployment_id: str,
    wait: WaitOpt = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait")] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Delete the endpoint (the deployment goes through deleting to deleted)."""
    with client() as c:
        deployment = c.deployments.delete(deployment_id)
        if wait:
            deployment = _settle(c, deployment, timeout)
        _show(deployment, output, DEPLOYMENT_COLUMNS)


@handled
def invoke(
    deployment_id: str,
    data: Annotated[str, typer.Option("--data", "-d", help="JSON, or @FILE holding JSON")],
) -> None:
    """Send a request to the deployed model and print its answer."""
    text = data
    if data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            _fail(f"cannot read {data[1:]}: {exc.strerror}", 2)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        _fail(f"--data is not JSON: {exc}", 2)
    with client() as c:
        answer = c.invoke(deployment_id, payload)
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
    else:
        typer.echo(json.dumps(answer, indent=2))


@handled
def decisions(
    deployment_id: str,
    limit: Annotated[int, typer.Option(min=1)] = 10,
    output: Output = OutputFormat.table,
) -> None:
    """The optimizer's latest decisions for a deployment, with their reasons."""
    with client() as c:
        found = c.decisions(deployment_id, limit=limit)
    if not found and output is OutputFormat.table:
        err.print(
            "No decisions yet: the optimizer decides for deployments that have it on "
            "(deploy --slo-ms MS), once per pass.",
            markup=False,
        )
        return
    _show(found, output, DECISION_COLUMNS)


def register(cli: typer.Typer) -> None:
    """Add the client's commands to the ``stratus`` command."""
    cli.command("login")(login)
    cli.add_typer(projects_cli, name="projects")
    cli.add_typer(runs_cli, name="runs")
    cli.add_typer(models_cli, name="models")
    cli.command("deploy")(deploy)
    cli.add_typer(deployments_cli, name="deployments")
    cli.command("invoke")(invoke)
    cli.command("decisions")(decisions)
