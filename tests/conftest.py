"""Test fixtures: the real PostgreSQL and Redis, a schema built by Alembic once per session,
each test in a rolled-back transaction. Without the servers the suite skips those tests and
says why; with ``STRATUS_REQUIRE_SERVICES=1`` (CI) an unreachable server is a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.db import build_engine
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "STRATUS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("STRATUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("STRATUS_REQUIRE_SERVICES") == "1"
TEST_PEPPER = "test-pepper-0123456789abcdef"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def host_roots(tmp_path: Path) -> dict[str, object]:
    """Local backend settings whose host roots are the test's own directory and the examples."""
    return {"local": {"host_roots": [tmp_path, EXAMPLES]}}


def _unavailable(what: str, why: str) -> None:
    message = f"{what} unreachable ({why})"
    if REQUIRE:
        pytest.fail(message + "; STRATUS_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message + "; these tests need it")


def _postgres_admin_engine() -> Engine | None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return engine
    except Exception:
        engine.dispose()
        return None


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head with Alembic; dropped afterwards."""
    admin = _postgres_admin_engine()
    if admin is None:
        _unavailable("PostgreSQL", PG_ADMIN_URL.split("@")[-1])
    assert admin is not None
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this test session, migrated to head with Alembic."""
    with scratch_database("stratus_test") as url:
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = build_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        _unavailable("Redis", f"{REDIS_URL}: {type(exc).__name__}")
    return REDIS_URL


@pytest.fixture
def connection(pg_engine: Engine) -> Iterator[Connection]:
    """One connection whose outer transaction is rolled back after the test."""
    conn = pg_engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions whose commits become savepoints inside the test's transaction."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        database_url=pg_url,
        broker_url=os.environ.get("STRATUS_TEST_BROKER_URL", REDIS_URL),
        key_pepper=TEST_PEPPER,
        backends=host_roots(tmp_path),
    )


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings, session_factory)
    with TestClient(app) as test_client:
        yield test_client


# --- the embedded default: SQLite file, no servers ---------------------------------------


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = Settings(
        env="test",
        data_dir=tmp_path / "data",
        key_pepper=TEST_PEPPER,
        backends=host_roots(tmp_path),
    )
    upgrade(settings.effective_database_url)
    return settings


@pytest.fixture
def sqlite_factory(sqlite_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(sqlite_settings.effective_database_url)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def sqlite_client(
    sqlite_settings: Settings, sqlite_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, sqlite_factory)) as test_client:
        yield test_client
