"""`stratus db upgrade` and `stratus admin create-key` on a throwaway SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.db import build_engine
from app.domain.api_keys.service import authenticate
from app.domain.audit.models import AuditEvent
from tests.factories import PEPPER

runner = CliRunner()


def _env(url: str, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "STRATUS_ENV": "test",
        "STRATUS_DATABASE_URL": url,
        "STRATUS_BROKER_URL": "memory://",
        "STRATUS_KEY_PEPPER": PEPPER,
    }
    return env | extra


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def migrated_url(sqlite_url: str) -> str:
    result = runner.invoke(cli, ["db", "upgrade"], env=_env(sqlite_url))
    assert result.exit_code == 0, result.output
    return sqlite_url


def test_db_upgrade_creates_the_tables(migrated_url: str) -> None:
    engine = build_engine(migrated_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "api_keys", "projects", "training_runs", "outbox"} <= tables


def test_db_upgrade_is_idempotent_and_quiet_on_stdout(migrated_url: str) -> None:
    result = runner.invoke(cli, ["db", "upgrade", "--revision", "head"], env=_env(migrated_url))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "up to date" in result.stderr


def test_db_upgrade_to_an_unknown_revision_fails_with_a_message(sqlite_url: str) -> None:
    result = runner.invoke(cli, ["db", "upgrade", "--revision", "nope"], env=_env(sqlite_url))
    assert result.exit_code == 1
    assert "migration failed" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_create_key_prints_only_a_secret_that_authenticates_as_admin(migrated_url: str) -> None:
    result = runner.invoke(cli, ["admin", "create-key", "--name", "x"], env=_env(migrated_url))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    secret = lines[0]
    assert secret not in result.stderr
    assert "Created admin key 'x'" in result.stderr

    engine = build_engine(migrated_url)
    try:
        with Session(engine) as session:
            principal = authenticate(session, secret, PEPPER)
            events = session.scalars(select(AuditEvent)).all()
            assert authenticate(session, secret, "another-pepper-0123456789") is None
    finally:
        engine.dispose()
    assert principal is not None
    assert principal.is_admin
    assert principal.name == "x"
    assert [(e.action, e.actor_id, e.object_id) for e in events] == [
        ("api_key.create", None, str(principal.id))
    ]


def test_create_key_twice_makes_two_distinct_keys(migrated_url: str) -> None:
    first = runner.invoke(cli, ["admin", "create-key", "--name", "a"], env=_env(migrated_url))
    second = runner.invoke(cli, ["admin", "create-key", "--name", "a"], env=_env(migrated_url))
    assert first.exit_code == second.exit_code == 0
    assert first.stdout != second.stdout


@pytest.mark.parametrize("name", ["", "bad\nname", "x" * 101])
def test_create_key_refuses_a_bad_name(migrated_url: str, name: str) -> None:
    result = runner.invoke(cli, ["admin", "create-key", "--name", name], env=_env(migrated_url))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--name" in result.stderr


def test_create_key_requires_a_name(migrated_url: str) -> None:
    result = runner.invoke(cli, ["admin", "create-key"], env=_env(migrated_url))
    assert result.exit_code == 2
    assert result.stdout == ""


def test_create_key_before_migrations_says_what_to_do(sqlite_url: str) -> None:
    result = runner.invoke(cli, ["admin", "create-key", "--name", "x"], env=_env(sqlite_url))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "stratus db upgrade" in result.stderr


def test_unsafe_production_settings_are_refused_without_a_traceback(sqlite_url: str) -> None:
    env = _env(sqlite_url, STRATUS_ENV="prod")
    result = runner.invoke(cli, ["admin", "create-key", "--name", "x"], env=env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "invalid configuration" in result.stderr
    assert "STRATUS_DATABASE_URL must point at PostgreSQL" in result.stderr
    assert "Traceback" not in result.output


def test_no_arguments_shows_the_commands() -> None:
    result = runner.invoke(cli, [])
    for command in ("dev", "db", "admin", "api", "worker", "beat"):
        assert command in result.output


@pytest.mark.parametrize("command", [["api"], ["worker"]])
def test_prod_refuses_an_unacknowledged_local_backend(command: list[str]) -> None:
    url = "postgresql+psycopg://stratus@127.0.0.1:5432/stratus"
    env = _env(url, STRATUS_ENV="prod", STRATUS_BROKER_URL="redis://127.0.0.1:6379/0")
    result = runner.invoke(cli, command, env=env)
    assert result.exit_code == 2
    assert "STRATUS_BACKENDS__LOCAL__ALLOW_IN_PROD=true" in result.stderr
    assert "Traceback" not in result.output
