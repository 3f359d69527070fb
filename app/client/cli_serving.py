"""``stratus deploy``, ``deployments``, ``invoke`` and ``decisions``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_output import (
    DECISION_COLUMNS,
    DEPLOYMENT_COLUMNS,
    Output,
    OutputFormat,
    ProjectOpt,
    WaitOpt,
    client,
    err,
    fail,
    handled,
    show,
)
from .client import Client
from .models import Deployment

# --- deployments ---------------------------------------------------------------------------

deployments_cli = typer.Typer(
    help="Deployments (models served as endpoints).", no_args_is_help=True
)


def _settle(c: Client, deployment: Deployment, timeout: float | None) -> Deployment:
    with err.status(f"Waiting for deployment {deployment.name} ...") as status:
        settled = c.deployments.wait(deployment.id, timeout=timeout)
        status.stop()
    if settled.status == "failed":
        fail(f"deployment {settled.id} failed: {settled.status_reason}")
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
        show(deployment, output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("ls")
@handled
def deployments_ls(
    project: ProjectOpt,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    output: Output = OutputFormat.table,
) -> None:
    """A project's deployments, newest first."""
    with client() as c:
        show(c.deployments.list(project, limit=limit), output, DEPLOYMENT_COLUMNS)


@deployments_cli.command("get")
@handled
def deployments_get(deployment_id: str, output: Output = OutputFormat.table) -> None:
    """One deployment."""
    with client() as c:
        show(c.deployments.get(deployment_id), output, DEPLOYMENT_COLUMNS)


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
        show(deployment, output, DEPLOYMENT_COLUMNS)


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
        show(deployment, output, DEPLOYMENT_COLUMNS)


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
            fail(f"cannot read {data[1:]}: {exc.strerror}", 2)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        fail(f"--data is not JSON: {exc}", 2)
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
    show(found, output, DECISION_COLUMNS)
