"""Tracking against a scripted server: batches flush in the background, a resent batch keeps
its batch_id, and the run ends completed or failed with the block."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import stratus

PROJECT = str(uuid.uuid4())


class FakeServer:
    """Stores metric batches once per batch_id; drops every third answer after storing it."""

    def __init__(self, drop_every: int = 3) -> None:
        self.run_id = str(uuid.uuid4())
        self.status = "running"
        self.final: dict[str, float] = {}
        self.reason: str | None = None
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.posts = 0
        self.drop_every = drop_every
        self.lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        return {
            "id": self.run_id,
            "project_id": PROJECT,
            "name": "t",
            "backend": "external",
            "spec": {},
            "status": self.status,
            "final_metrics": self.final,
            "failure_reason": self.reason,
            "created_at": now,
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        if path == f"/v1/projects/{PROJECT}/runs":
            assert body["backend"] == "external"
            return httpx.Response(201, json=self.run())
        if path.endswith("/metrics"):
            with self.lock:
                self.batches.setdefault(body["batch_id"], body["points"])
                self.posts += 1
                if self.posts % self.drop_every == 0:
                    raise httpx.ReadError("connection dropped after the server stored it")
            return httpx.Response(201, json={"accepted": len(body["points"])})
        if path.endswith("/complete"):
            self.status, self.final = "completed", body["final_metrics"]
        elif path.endswith("/fail"):
            self.status, self.reason = "failed", body["reason"]
        return httpx.Response(200, json=self.run())


def _client(server: FakeServer) -> stratus.Client:
    client = stratus.Client("http://fake", "key", transport=httpx.MockTransport(server))
    client.http.sleep = lambda _s: None
    return client


def test_points_arrive_once_in_batches_across_dropped_answers() -> None:
    server = FakeServer()
    with _client(server).start_run(PROJECT, "t", flush_interval_s=0.05) as run:
        for step in range(25_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            if step % 5000 == 0:
                run.flush()
        run.log_metrics({"acc": 0.5, "loss": 0.001}, step=25_000)
    stored = [p for points in server.batches.values() for p in points]
    steps = sorted(p["step"] for p in stored if p["name"] == "loss")
    assert steps == list(range(25_001))
    assert all(len(points) <= 10_000 for points in server.batches.values())
    assert server.posts > len(server.batches)  # some were resent, none stored twice
    assert server.status == "completed"
    assert server.final == {"loss": 0.001, "acc": 0.5}
    assert run.points_sent == 25_002


def test_an_exception_fails_the_run_and_propagates() -> None:
    server = FakeServer(drop_every=1000)

    def train() -> None:
        with _client(server).start_run(PROJECT) as run:
            run.log_metric("loss", 2.0)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    assert server.status == "failed"
    assert server.reason == "ZeroDivisionError: division by zero"
    assert len(server.batches) == 1


def test_bad_points_are_refused_when_logged() -> None:
    server = FakeServer()
    with _client(server).start_run(PROJECT) as run:
        with pytest.raises(ValueError, match="finite"):
            run.log_metric("loss", float("nan"))
        with pytest.raises(ValueError, match="must match"):
            run.log_metric("bad name", 1.0)
    with pytest.raises(RuntimeError, match="ended"):
        run.log_metric("loss", 1.0)
