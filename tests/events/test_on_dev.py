"""On a fresh `stratus dev` (SQLite, the embedded broker, worker processes of its own): a run's
events reach a webhook receiver on the loopback, signed, from the worker; the SSE stream
replays them; /metrics adds up what the API and the worker processes counted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.devserver import checkout_dev
from tests.events.receiver import receiver
from tests.test_embedded import Dev

pytestmark = pytest.mark.slow


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    with checkout_dev(tmp_path) as server:
        yield server


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit("} ", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_events_webhooks_streams_and_metrics_on_dev(dev: Dev) -> None:
    admin = {"Authorization": f"Bearer {(dev.data_dir / 'admin-key').read_text().strip()}"}
    http = httpx.Client(base_url=dev.base_url, headers=admin, timeout=30)
    with receiver() as hook:
        project = http.post("/v1/projects", json={"name": "hooked"}).json()["id"]
        created = http.post(
            f"/v1/projects/{project}/webhooks",
            json={"url": hook.url, "events": ["run.*"], "description": "tests"},
        )
        assert created.status_code == 201, created.text
        hook.secret = created.json()["secret"]
        run = http.post(
            f"/v1/projects/{project}/runs", json={"name": "tracked", "backend": "external"}
        ).json()
        assert http.post(f"/v1/runs/{run['id']}/fail", json={"reason": "diverged"}).is_success
        deadline = time.monotonic() + 60
        while len(hook.processed) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(hook.processed) == 2, (dev.data_dir / "logs" / "worker.log").read_text()[-3000:]
    assert hook.bad_signatures == 0
    # Deliveries run concurrently: receivers order by the payload's timestamp, not arrival.
    assert sorted(r.payload["type"] for r in hook.received) == ["run.created", "run.failed"]
    first = hook.received[0]
    print("delivered webhook:", json.dumps(first.headers, indent=1), first.body.decode())  # noqa: T201

    with http.stream(
        "GET", f"/v1/projects/{project}/events/stream", headers={"Last-Event-ID": "0"}
    ) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if sum(1 for x in lines if x.startswith("data:")) == 2:
                break
    types = [json.loads(x[5:])["type"] for x in lines if x.startswith("data:")]
    assert types == ["run.created", "run.failed"]

    deliveries = http.get(
        f"/v1/projects/{project}/webhooks/{created.json()['id']}/deliveries"
    ).json()["items"]
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert all(d["attempts"][0]["status_code"] == 200 for d in deliveries)

    text = httpx.get(f"{dev.base_url}/metrics").text
    print("\n".join(line for line in text.splitlines() if "stratus_" in line))  # noqa: T201
    # Counted in the worker processes, scraped from the API's.
    assert _metric(text, "stratus_webhook_deliveries_total", outcome="delivered") == 2
    task = "stratus.webhooks.deliver"
    assert (_metric(text, "stratus_tasks_total", task=task, outcome="success") or 0) >= 2
    assert (
        _metric(
            text,
            "stratus_http_requests_total",
            method="POST",
            route="/v1/projects/{project_id}/webhooks",
            status="201",
        )
        == 1
    )
    assert _metric(text, "stratus_runs", status="failed") == 1
    assert _metric(text, "stratus_outbox_backlog") is not None
