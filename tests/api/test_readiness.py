"""/readyz names the dependency that is down, and writes go on without the broker."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.settings import Settings
from tests.factories import make_key

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_ready_when_both_answer(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["unavailable"] == []
    assert "retry-after" not in ready.headers


def test_redis_down_names_the_broker_and_writes_still_answer(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    db.commit()
    broker_down = settings.model_copy(update={"broker_url": NOWHERE})
    with TestClient(create_app(broker_down, session_factory)) as client:
        ready = client.get("/readyz")
        created = client.post("/v1/projects", json={"name": "no-broker"}, headers=key.headers)
    assert ready.status_code == 503
    assert ready.json()["unavailable"] == ["broker"]
    assert ready.json()["checks"]["database"] == "ok"
    assert int(ready.headers["retry-after"]) == settings.serving.retry_after_s
    assert created.status_code == 201, created.text
