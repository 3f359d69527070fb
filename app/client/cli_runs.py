"""``stratus runs`` and ``stratus models``: submit a directory and follow it, list, read,
stop; list and download model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_output import (
    MODEL_COLUMNS,
    RUN_COLUMNS,
    Output,
    OutputFormat,
    ProjectOpt,
    client,
    dump,
    err,
    fail,
    handled,
    metrics_text,
    out,
    show,
)
from .client import Client
from .models import Run

# --- runs ----------------------------------------------------------------------------------

runs_cli = typer.Typer(help="Training runs.", no_args_is_help=True)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            fail(f"{what} takes KEY=VALUE, not {value!r}", 2)
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
        dump(run)
    else:
        err.print(f"run {run.id} {run.status}", markup=False)
        if run.failure_reason:
            err.print(f"reason: {run.failure_reason}", markup=False)
        if run.final_metrics:
            out.print(metrics_text(run.final_metrics), markup=False)
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
            show(run, output, RUN_COLUMNS)
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
        show(c.runs.list(project, status=status, limit=limit), output, RUN_COLUMNS)


@runs_cli.command("get")
@handled
def runs_get(run_id: str, output: Output = OutputFormat.table) -> None:
    """One run."""
    with client() as c:
        show(c.runs.get(run_id), output, RUN_COLUMNS)


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
        show(c.runs.stop(run_id), output, RUN_COLUMNS)


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
        show(c.models.list(project, limit=limit), output, MODEL_COLUMNS)


@models_cli.command("get")
@handled
def models_get(model_version_id: str, output: Output = OutputFormat.table) -> None:
    """One model version."""
    with client() as c:
        show(c.models.get(model_version_id), output, MODEL_COLUMNS)


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
