"""Worker fixtures: committed data (a worker thread cannot see a rolled-back transaction),
the app's settings pointed at the test database, and a real Celery worker on Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.backends import registry
from app.db import Base, get_engine, get_sessionmaker, unit_of_work
from app.domain import models  # noqa: F401 - every table in Base.metadata
from app.settings import get_settings
from tests.conftest import TEST_PEPPER
from workers.celery_app import celery_app, configure

UnitOfWork = Callable[[], AbstractContextManager[Session]]


def reset_celery(queue: str | None = None) -> None:
    """Re-read the settings into the Celery app and drop what it cached from the old ones."""
    configure(celery_app, get_settings())
    if queue is not None:
        celery_app.conf.task_default_queue = queue
    # The connection pool and the queue declarations are built once and kept; without this
    # the app would go on publishing to the previous broker and queue. The pools themselves
    # are kombu's, shared per broker URL, so they are left open for the next user.
    celery_app._pool = None
    celery_app.__dict__.pop("amqp", None)


def _reload_settings() -> None:
    get_settings.cache_clear()
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    registry.reset()


@pytest.fixture
def committed(pg_engine: Engine) -> Iterator[UnitOfWork]:
    """Units of work that really commit; every table is emptied after the test."""
    factory = sessionmaker(bind=pg_engine, expire_on_commit=False)
    yield lambda: unit_of_work(factory)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def app_on_pg(pg_url: str) -> Iterator[None]:
    """``get_settings()``/``get_engine()`` point at the test database; no broker server."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATUS_DATABASE_URL", pg_url)
        mp.setenv("STRATUS_BROKER_URL", "memory://")
        mp.setenv("STRATUS_KEY_PEPPER", TEST_PEPPER)
        # No backend unless a test brings one (registry.override): the outbox path alone.
        mp.setenv("STRATUS_BACKENDS__LOCAL__ENABLED", "false")
        _reload_settings()
        reset_celery()
        try:
            yield
        finally:
            _reload_settings()
    reset_celery()


@pytest.fixture
def celery_queue(app_on_pg: None, redis_url: str) -> Iterator[str]:
    """The Celery app on the real Redis, publishing to a queue of its own.

    A queue per test keeps a concurrent test run, or messages left by an aborted one, from
    handing this test's message ids to a worker that reads another database.
    """
    queue = f"stratus-test-{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATUS_BROKER_URL", redis_url)
        mp.setitem(celery_app.conf, "worker_enable_remote_control", False)
        get_settings.cache_clear()
        reset_celery(queue)
        try:
            yield queue
        finally:
            client = redis.Redis.from_url(redis_url)
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            client.close()
    get_settings.cache_clear()
    reset_celery()


@pytest.fixture
def celery_worker(celery_queue: str) -> Iterator[WorkController]:
    """A real worker thread consuming the test's queue."""
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ) as worker:
        yield worker


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"condition not met within {timeout}s")
