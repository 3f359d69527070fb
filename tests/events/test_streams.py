"""Live streams over a real socket: events as they commit, keep-alive comments, resuming after
a dropped connection with Last-Event-ID without losing an event, a newer event held back
while an older id is still committing, and a run's log followed to its end."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.backends import registry
from app.backends.base import LogPage
from app.clock import utcnow
from app.domain.access import Role
from app.domain.events.models import Event
from app.domain.events.service import record_event
from app.domain.events.stream import safe_horizon
from app.domain.runs import service as runs
from app.domain.runs.states import RunStatus
from app.main import create_app
from app.settings import ObservabilitySettings, Settings
from tests.events.server import serve
from tests.factories import Key, make_key, make_project, make_run
from tests.workers.conftest import UnitOfWork

FAST = ObservabilitySettings(stream_poll_s=0.05, stream_keepalive_s=0.3, stream_settle_s=3)


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comment: str | None = None


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Parse a text/event-stream as it arrives, one frame (or comment) at a time."""
    current = Frame()
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Frame(comment=line[1:].strip())
        elif line == "":
            if current.data or current.event:
                yield current
            current = Frame()
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data.append(value)


def next_event(stream: Iterator[Frame]) -> Frame:
    return next(f for f in stream if f.comment is None)


@pytest.fixture
def live(settings: Settings, pg_engine: Engine, committed: UnitOfWork) -> Iterator[str]:
    factory = sessionmaker(bind=pg_engine, expire_on_commit=False)
    app = create_app(settings.model_copy(update={"observability": FAST}), factory)
    with serve(app) as url:
        yield url


@pytest.fixture
def scene(committed: UnitOfWork) -> tuple[Key, Any]:
    with committed() as session:
        key = make_key(session)
        project = make_project(session, (key, Role.VIEWER))
    return key, project


def _stop_a_run(committed: UnitOfWork, project: Any) -> uuid.UUID:
    with committed() as session:
        run = make_run(session, project, status=RunStatus.PENDING)
        runs.transition(session, run.id, RunStatus.PENDING, RunStatus.STOPPED)
        return run.id


def test_resume_after_a_dropped_connection_loses_no_event(
    live: str, committed: UnitOfWork, scene: tuple[Key, Any]
) -> None:
    key, project = scene
    url = f"{live}/v1/projects/{project.id}/events/stream"
    transcript: list[str] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers=key.headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        stream = frames(response)
        assert next(stream).comment == "keep-alive"  # quiet: a comment keeps proxies open
        before = [_stop_a_run(committed, project) for _ in range(3)]
        got = [next_event(stream) for _ in range(3)]
        transcript += [f"id: {f.id}\ndata: {f.data[0]}" for f in got]
    # The connection is gone; the platform goes on.
    during = [_stop_a_run(committed, project) for _ in range(4)]
    last_id = got[-1].id
    assert last_id is not None
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers={**key.headers, "Last-Event-ID": last_id}) as response,
    ):
        stream = frames(response)
        resumed = [next_event(stream) for _ in range(4)]
        after = _stop_a_run(committed, project)
        resumed.append(next_event(stream))
        transcript += [f"id: {f.id}\ndata: {f.data[0]}" for f in resumed]

    events = [json.loads(f.data[0]) for f in got + resumed]
    assert [uuid.UUID(e["subject_id"]) for e in events] == [*before, *during, after]
    assert all(e["type"] == "run.stopped" for e in events)
    assert [int(f.id or 0) for f in got + resumed] == [e["id"] for e in events]
    with committed() as session:
        stored = session.scalars(
            select(Event.id).where(Event.project_id == project.id).order_by(Event.id)
        ).all()
    assert [e["id"] for e in events] == list(stored)
    print("\n\n".join(transcript))  # noqa: T201 - the transcript, for the record


def test_a_newer_event_waits_for_an_older_id_still_committing(
    live: str, pg_engine: Engine, committed: UnitOfWork, scene: tuple[Key, Any]
) -> None:
    """Ids are handed out at insert, not commit: the stream must not pass an id that another
    transaction still holds, or a client resuming after the newer one would never see it."""
    key, project = scene
    url = f"{live}/v1/projects/{project.id}/events/stream"
    factory = sessionmaker(bind=pg_engine, expire_on_commit=False)
    slow = factory()
    older = record_event(slow, "budget.exceeded", project.id, project.id, {"slow": True})
    with committed() as session:
        newer = record_event(session, "budget.exceeded", project.id, project.id, {"slow": False})
    assert older.id < newer.id
    received: list[int] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "GET", url, headers={**key.headers, "Last-Event-ID": str(older.id - 1)}
        ) as response,
    ):
        stream = frames(response)
        assert next(stream).comment == "keep-alive"  # the newer one is held back
        committer = threading.Timer(0.5, lambda: (slow.commit(), slow.close()))
        committer.start()
        received = [int(next_event(stream).id or 0) for _ in range(2)]
        committer.join()
    assert received == [older.id, newer.id]


def test_horizon_passes_gaps_that_settled() -> None:
    now, settle = utcnow(), timedelta(seconds=5)
    old = now - timedelta(seconds=60)
    assert safe_horizon([(11, now), (12, now)], 10, settle) is None
    assert safe_horizon([(11, now), (13, now)], 10, settle) == 11  # 12 may still commit
    assert safe_horizon([(11, now), (13, old)], 10, settle) is None  # 12 was rolled back
    assert safe_horizon([(14, now)], 10, settle) == 10


def test_stream_refuses_strangers_and_bad_ids(
    client: TestClient, db: Session, settings: Settings
) -> None:
    key, stranger = make_key(db), make_key(db)
    project = make_project(db, (key, Role.VIEWER))
    db.commit()
    url = f"/v1/projects/{project.id}/events/stream"
    assert client.get(url, headers=stranger.headers).status_code == 404
    for given in ("x1", "-1", "9223372036854775808", "1" * 25):
        bad = client.get(url, headers={**key.headers, "Last-Event-ID": given})
        assert bad.status_code in (400, 422), given
        assert bad.headers["content-type"] == "application/problem+json"
    assert client.get(url).status_code == 401


def test_stream_on_the_embedded_default(
    sqlite_settings: Settings, sqlite_factory: sessionmaker[Session]
) -> None:
    fast = FAST.model_copy(update={"stream_max_s": 0.5})
    app = create_app(sqlite_settings.model_copy(update={"observability": fast}), sqlite_factory)
    with sqlite_factory() as session:
        key = make_key(session)
        project = make_project(session, (key, Role.VIEWER))
        run = make_run(session, project, status=RunStatus.PENDING)
        runs.transition(session, run.id, RunStatus.PENDING, RunStatus.STOPPED)
        session.commit()
    with TestClient(app) as client:
        url = f"/v1/projects/{project.id}/events/stream"
        body = client.get(url, headers={**key.headers, "Last-Event-ID": "0"}).text
        listed = client.get(f"/v1/projects/{project.id}/events", headers=key.headers).json()
    assert body.startswith("retry: 2000\n\n")
    event = listed["items"][0]
    assert f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}" in body


@dataclass
class GrowingLog:
    """A backend whose job log grows while the test watches; cursors are line offsets."""

    lines: list[str] = field(default_factory=list)
    name: str = "local"

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        start = int(cursor or 0)
        page = self.lines[start : start + limit]
        return LogPage(lines=page, next_cursor=str(start + len(page)))


def test_run_log_stream_follows_to_the_end_and_resumes(
    live: str, committed: UnitOfWork, scene: tuple[Key, Any]
) -> None:
    key, project = scene
    log = GrowingLog(["epoch 1 loss=0.9", "epoch 2 loss=0.5"])
    with committed() as session:
        run = make_run(session, project, status=RunStatus.RUNNING)
    url = f"{live}/v1/runs/{run.id}/logs/stream"
    with (
        registry.override("local", log),  # type: ignore[arg-type]
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("GET", url, headers=key.headers) as response:
            stream = frames(response)
            first = next_event(stream)
            assert first.data == ["epoch 1 loss=0.9", "epoch 2 loss=0.5"]
            assert first.id == "2"
        log.lines += ["epoch 3 loss=0.2", "done"]
        with committed() as session:
            runs.transition(session, run.id, RunStatus.RUNNING, RunStatus.COMPLETED)
        resume = {**key.headers, "Last-Event-ID": "2"}
        with client.stream("GET", url, headers=resume) as response:
            rest = [f for f in frames(response) if f.comment is None]
    assert [(f.id, f.event, f.data) for f in rest] == [
        ("4", None, ["epoch 3 loss=0.2", "done"]),
        (None, "end", ["{}"]),
    ]


@dataclass
class ReadOut:
    """An ended job's log, read out: the backend says so with no next cursor."""

    name: str = "local"

    def fetch_logs(self, job_name: str, cursor: str | None, limit: int) -> LogPage:
        return LogPage(lines=["last words"], next_cursor=None)


def test_run_log_stream_ends_when_the_log_is_read_out(
    live: str, committed: UnitOfWork, scene: tuple[Key, Any]
) -> None:
    key, project = scene
    with committed() as session:
        run = make_run(session, project, status=RunStatus.COMPLETED)
    url = f"{live}/v1/runs/{run.id}/logs/stream"
    with (
        registry.override("local", ReadOut()),  # type: ignore[arg-type]
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers=key.headers) as response,
    ):
        got = [(f.event, f.data) for f in frames(response) if f.comment is None]
    assert got == [(None, ["last words"]), ("end", ["{}"])]
