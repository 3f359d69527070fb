"""Migrations: the full chain goes up, down and up again, and matches the ORM models."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import Base, build_engine
from app.domain import models  # noqa: F401  (registers every table)
from app.domain.metrics.repository import add_many
from app.migrate import MIGRATIONS_DIR, alembic_config, downgrade, upgrade
from tests.conftest import PG_ADMIN_URL
from tests.factories import make_project, make_run

TABLES = {
    "api_keys",
    "audit_events",
    "code_bundles",
    "deployments",
    "events",
    "evaluations",
    "idempotency_records",
    "leases",
    "memberships",
    "metric_batches",
    "metric_points",
    "metric_purges",
    "metric_retention",
    "model_aliases",
    "model_versions",
    "optimizer_decisions",
    "outbox",
    "poll_cursors",
    "projects",
    "training_runs",
    "ui_sessions",
    "webhook_deliveries",
    "webhooks",
}


@pytest.fixture
def empty_pg(pg_url: str) -> Iterator[str]:
    """A second, empty database next to the session's one."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"stratus_mig_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(url: str) -> set[str]:
    engine = build_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _drift(url: str) -> list[object]:
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_postgres(empty_pg: str) -> None:
    upgrade(empty_pg)
    assert _tables(empty_pg) == TABLES
    assert _drift(empty_pg) == [], "models and migrations disagree"
    downgrade(empty_pg, "base")
    assert _tables(empty_pg) == set()
    upgrade(empty_pg)
    assert _tables(empty_pg) == TABLES


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _tables(url) == TABLES
    assert _drift(url) == []
    downgrade(url, "base")
    assert _tables(url) == set()
    upgrade(url)
    assert _tables(url) == TABLES


def test_single_head_and_dated_file_names() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}_[a-z0-9_]+", path.stem), path.stem


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_metric_purges_revision_queues_points_of_already_deleted_projects(
    backend: str, empty_pg: str, tmp_path: Path
) -> None:
    """Projects deleted before the purge queue existed left points behind; the revision queues
    exactly the subjects that have points and no run or deployment."""
    url = empty_pg if backend == "postgresql" else f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url, "3b9e4f1c7d20")
    engine = build_engine(url)
    try:
        # Only metric_purges is newer than this revision, so the models fit its schema.
        with Session(engine) as session:
            project = make_project(session)
            run = make_run(session, project)
            orphan = uuid.uuid4()  # a run of a project deleted earlier
            for subject in (run.id, orphan, orphan):
                rows = [("loss", 0, datetime.now(UTC), 1.0)]
                add_many(session, project.id, "run", subject, rows)
            session.commit()
            project_id = project.id
        upgrade(url)
        with engine.connect() as conn:
            queued = conn.execute(text("SELECT subject_id, project_id FROM metric_purges")).all()
        assert [(str(s).replace("-", ""), str(p).replace("-", "")) for s, p in queued] == [
            (orphan.hex, project_id.hex)
        ]
    finally:
        engine.dispose()
