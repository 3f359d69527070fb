"""The deployment files (docker-compose.yml, Dockerfile, .dockerignore, README, .ci/run) agree
with the code: services, commands, env vars, and every module path they name."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app import cli as cli_module
from app.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "api", "worker", "beat")
CELERY = ["celery", "-A", "workers.celery_app:celery_app"]
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a container must listen beyond loopback
ENTRY_POINT = re.compile(r"^[a-z_][\w.]*:[A-Za-z_]\w*$")


# --- docker-compose.yml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_compose_has_exactly_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _command(services["migrate"]) == ["stratus", "db", "upgrade"]
    api = _command(services["api"])
    assert api[:2] == ["uvicorn", "app.main:app"]
    assert api[api.index("--port") + 1] == "8000"
    assert api[api.index("--host") + 1] == ALL_INTERFACES
    assert api[api.index("--workers") + 1] == "${API_WORKERS:-2}"  # one per core, when set
    assert _command(services["worker"])[:4] == [*CELERY, "worker"]
    beat = _command(services["beat"])
    assert beat[:4] == [*CELERY, "beat"]
    assert beat[beat.index("--scheduler") + 1] == "workers.beat:GuardedScheduler"


def test_compose_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"].get("restart") == "no"
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }, name
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check
    assert "8000:8000" in services["api"]["ports"]


def test_every_app_service_gets_production_settings(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["STRATUS_ENV"] == "prod", name
        assert env["STRATUS_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["STRATUS_KEY_PEPPER"] == "${STRATUS_KEY_PEPPER:?set it}", name
        db_url = make_url(env["STRATUS_DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set it}", "pw"))
        assert (db_url.drivername, db_url.host, db_url.port, db_url.database) == (
            "postgresql+psycopg",
            "postgres",
            5432,
            "stratus",
        ), name
        # The settings the containers get, read from the environment as they read them, pass
        # the production safety checks (nested groups included: the local backend is off).
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                if key.startswith("STRATUS_") and "${STRATUS_" not in value:
                    patch.setenv(key, value.replace("${POSTGRES_PASSWORD:?set it}", "pw"))
            patch.setenv("STRATUS_KEY_PEPPER", "p" * 32)
            settings = Settings()
        assert not settings.backends.local.enabled, name


def test_app_services_share_one_anchor(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    anchors = [k for k in compose if k.startswith("x-")]
    assert anchors, "a shared x- extension block"
    assert re.search(r"^x-[\w-]+: &\w[\w-]*", text, re.M)
    assert text.count("<<: *") >= len(APP_SERVICES)
    assert text.count("STRATUS_ENV") == 1, "environment is written once, in the anchor"


# --- Dockerfile and .dockerignore -----------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str]] = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions():
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def _exec_form(rest: str) -> list[str]:
    parsed: list[str] = json.loads(rest)
    return parsed


def test_dockerfile_is_multi_stage_and_copies_the_venv() -> None:
    stages = _stages()
    assert len(stages) >= 2
    builder_name = stages[0][0][1].split()[-1]
    assert stages[0][0][1].lower().startswith("python:3.11")
    final = stages[-1]
    assert final[0][1].split()[0] == "python:3.11-slim"
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(f"--from={builder_name}" in c for c in copies)


def test_dockerfile_final_stage_runs_unprivileged() -> None:
    users = [rest for word, rest in _stages()[-1] if word == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_dockerfile_serves_the_api_with_a_healthcheck_and_no_dev_extras() -> None:
    final = _stages()[-1]
    words = {word for word, _ in final}
    assert {"EXPOSE", "HEALTHCHECK", "CMD"} <= words
    assert "8000" in next(rest for word, rest in final if word == "EXPOSE").split()
    cmd = _exec_form(next(rest for word, rest in reversed(final) if word == "CMD"))
    assert cmd == ["uvicorn", "app.main:app", "--host", ALL_INTERFACES, "--port", "8000"]
    for word, rest in _instructions():
        if word == "RUN":
            assert "[dev]" not in rest
            assert "-e " not in rest, "the image installs a wheel, not an editable checkout"


def test_docker_context_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests"} <= ignored
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored, source


# --- every module path named by the deployment files resolves -------------------------------


def _named_entry_points(compose: dict[str, Any]) -> set[str]:
    tokens: list[str] = []
    for service in compose["services"].values():
        if "command" in service:
            tokens += _command(service)
    for word, rest in _instructions():
        if word == "CMD":
            tokens += _exec_form(rest)
    tokens += [cli_module.ASGI_APP, cli_module.CELERY_APP, cli_module.BEAT_SCHEDULER]
    return {t for t in tokens if ENTRY_POINT.match(t)}


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Resolving `app.main:app` builds the app; keep its SQLite file out of the checkout.
    monkeypatch.setenv("STRATUS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_entry_points_named_in_commands_exist(
    compose: dict[str, Any], isolated_settings: None
) -> None:
    names = _named_entry_points(compose)
    assert {
        "app.main:app",
        "workers.celery_app:celery_app",
        "workers.beat:GuardedScheduler",
    } <= names
    for name in sorted(names):
        module_name, attr = name.split(":")
        module = importlib.import_module(module_name)
        had = attr in vars(module)
        try:
            assert getattr(module, attr) is not None, name
            if name == "app.main:app":
                assert isinstance(module.app, FastAPI)
        finally:
            if not had:
                vars(module).pop(attr, None)  # `app.main:app` is built lazily; leave it unbuilt


def test_stratus_commands_used_by_the_files_exist() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["stratus"] == "app.cli:main"
    runner = CliRunner()
    for path in (["db", "upgrade"], ["admin", "create-key"], ["api"], ["worker"], ["beat"]):
        result = runner.invoke(cli_module.cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
    dev_help = runner.invoke(cli_module.cli, ["dev", "--help"]).output
    for option in ("--port", "--host", "--data-dir"):
        assert option in dev_help


# --- README and CI script -------------------------------------------------------------------


def _env_names(model: type[BaseModel], prefix: str = "STRATUS_") -> dict[str, Any]:
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names[f"{prefix}{name.upper()}"] = info.default
    return names


def test_readme_documents_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(STRATUS_\w+)` \| (.*?) \|", readme, re.M)
    }
    for name, default in _env_names(Settings).items():
        assert name in rows, f"README's configuration table lacks {name}"
        if default is not None:
            shown = str(default)
            assert f"`{shown}`" in rows[name], f"{name}: README shows {rows[name]!r}, not {shown}"


def test_readme_gives_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/stratus dev" in readme
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest" in readme
    )
    assert "http://127.0.0.1:8000/docs" in readme


def test_ci_script_is_strict_and_requires_the_services() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text().replace('"', "")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "STRATUS_REQUIRE_SERVICES=1" in text
    for step in ("ruff check app workers tests", "ruff format --check", "mypy app workers"):
        assert step in text
