"""Following a run's log: pages until the backend says it is read out, or until the run has
ended and one more read finds nothing new."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

import stratus

RUN = str(uuid.uuid4())


def _run(status: str) -> dict[str, Any]:
    return {
        "id": RUN,
        "project_id": str(uuid.uuid4()),
        "name": "r",
        "backend": "sagemaker",
        "spec": {},
        "status": status,
        "created_at": datetime.now(UTC).isoformat(),
    }


def _client(pages: list[dict[str, Any]], statuses: list[str]) -> tuple[stratus.Client, list]:
    cursors: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            cursors.append(request.url.params.get("cursor"))
            return httpx.Response(200, json=pages.pop(0))
        return httpx.Response(200, json=_run(statuses.pop(0)))

    client = stratus.Client("http://fake", "key", transport=httpx.MockTransport(handler))
    return client, cursors


def test_follow_reads_on_until_the_run_ends_and_drains(monkeypatch: Any) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    pages = [
        {"lines": ["a", "b"], "next_cursor": "c1"},
        {"lines": [], "next_cursor": "c1"},  # running, nothing new
        {"lines": ["c"], "next_cursor": "c2"},
        {"lines": [], "next_cursor": "c2"},  # the run has ended now ...
        {"lines": ["d"], "next_cursor": "c3"},  # ... but its last line arrives late
        {"lines": [], "next_cursor": "c3"},
    ]
    client, cursors = _client(pages, ["running", "completed"])
    assert list(client.runs.logs(RUN, follow=True)) == ["a", "b", "c", "d"]
    assert cursors == [None, "c1", "c1", "c2", "c2", "c3"]


def test_a_read_out_log_ends_without_asking_for_the_status() -> None:
    pages = [{"lines": ["a"], "next_cursor": "1"}, {"lines": ["b"], "next_cursor": None}]
    client, cursors = _client(pages, [])
    assert list(client.runs.logs(RUN, follow=True)) == ["a", "b"]
    assert cursors == [None, "1"]


def test_without_follow_one_pass_of_what_is_there() -> None:
    client, _ = _client(
        [{"lines": ["a"], "next_cursor": "1"}, {"lines": [], "next_cursor": "1"}], []
    )
    assert list(client.runs.logs(RUN)) == ["a"]
