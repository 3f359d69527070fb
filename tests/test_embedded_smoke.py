"""The embedded default in-process: SQLite file, no servers. Runs where nothing else can."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain.api_keys.service import issue_key
from app.domain.outbox.models import OutboxMessage
from app.domain.outbox.service import claim_due
from app.settings import Settings
from tests.factories import LOCAL_SPEC


def _admin(factory: sessionmaker[Session], settings: Settings) -> dict[str, str]:
    with unit_of_work(factory) as session:
        key = issue_key(session, "admin", True, settings.key_pepper, None)
    return {"Authorization": f"Bearer {key.secret}"}


def test_whole_api_loop_on_sqlite(
    sqlite_client: TestClient,
    sqlite_factory: sessionmaker[Session],
    sqlite_settings: Settings,
    tmp_path: Path,
) -> None:
    c = sqlite_client
    admin = _admin(sqlite_factory, sqlite_settings)
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200, ready.text

    secret = c.post("/v1/api-keys", json={"name": "alice"}, headers=admin).json()["secret"]
    alice = {"Authorization": f"Bearer {secret}"}
    project = c.post("/v1/projects", json={"name": "demo"}, headers=alice).json()
    body = {"name": "r", "spec": LOCAL_SPEC}
    url = f"/v1/projects/{project['id']}/runs"
    first = c.post(url, json=body, headers=alice | {"Idempotency-Key": "k1"})
    again = c.post(url, json=body, headers=alice | {"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    run_id = first.json()["id"]

    points = {"points": [{"name": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(50)]}
    assert c.post(f"/v1/runs/{run_id}/metrics", json=points, headers=alice).status_code == 201
    bad = {"points": points["points"] + [{"name": "bad name", "value": 1.0}]}
    assert c.post(f"/v1/runs/{run_id}/metrics", json=bad, headers=alice).status_code == 422
    history = c.get(f"/v1/runs/{run_id}/metrics?limit=1000", headers=alice).json()["items"]
    assert [p["step"] for p in history] == list(range(50))

    artifact = tmp_path / "model.tar.gz"  # under the settings' host roots
    artifact.write_bytes(b"")
    model = c.post(
        f"/v1/projects/{project['id']}/models",
        json={"name": "m", "artifact_uri": artifact.as_uri()},
        headers=alice,
    ).json()
    dep = c.post(
        f"/v1/projects/{project['id']}/deployments",
        json={"name": "d", "model_version_id": model["id"]},
        headers=alice,
    )
    assert dep.status_code == 201, dep.text
    assert dep.json()["status"] == "creating"

    stopped = c.post(f"/v1/runs/{run_id}/stop", headers=alice).json()
    assert stopped["status"] == "stopped"


def test_outbox_claims_use_the_portable_path(
    sqlite_client: TestClient, sqlite_factory: sessionmaker[Session], sqlite_settings: Settings
) -> None:
    admin = _admin(sqlite_factory, sqlite_settings)
    project = sqlite_client.post("/v1/projects", json={"name": "q"}, headers=admin).json()
    body = {"name": "r", "spec": LOCAL_SPEC}
    for _ in range(3):
        r = sqlite_client.post(f"/v1/projects/{project['id']}/runs", json=body, headers=admin)
        assert r.status_code == 201
    with unit_of_work(sqlite_factory) as session:
        first = claim_due(session, timedelta(minutes=5), 10)
        assert len(first) == 3
    with unit_of_work(sqlite_factory) as session:
        assert claim_due(session, timedelta(minutes=5), 10) == []
        pending = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.processed_at.is_(None))
        )
        assert pending == 3
