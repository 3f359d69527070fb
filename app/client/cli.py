"""The client's commands: ``stratus login``, ``projects``, ``runs``, ``models``, ``deploy``,
``deployments``, ``invoke`` and ``decisions``. Tables for people, ``--output json`` for scripts;
messages and spinners go to stderr, so stdout stays parseable. Exit 0 only on success."""

from __future__ import annotations

from typing import Annotated

import typer

from . import config as config_mod
from .cli_output import PROJECT_COLUMNS, Output, OutputFormat, client, err, handled, show
from .cli_runs import models_cli, runs_cli
from .cli_serving import decisions, deploy, deployments_cli, invoke
from .client import Client

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
        show(c.projects.list(), output, PROJECT_COLUMNS)


@projects_cli.command("create")
@handled
def projects_create(
    name: str,
    description: Annotated[str, typer.Option(help="What the project is for")] = "",
    output: Output = OutputFormat.table,
) -> None:
    """Create a project (you become its owner)."""
    with client() as c:
        show(c.projects.create(name, description), output, PROJECT_COLUMNS)


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
