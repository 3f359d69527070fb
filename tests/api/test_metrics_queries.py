"""Series in time buckets, latest values, optimizer windows and retention — on PostgreSQL,
with the SQLite fallbacks checked against the same expectations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.access import Role
from app.domain.metrics import aggregates, repository
from app.domain.metrics import service as metrics
from app.domain.metrics.models import MetricBatchRecord, MetricPoint, MetricPurge
from app.domain.metrics.schemas import WindowStats
from app.domain.pagination import PageRequest
from tests.factories import make_deployment, make_key, make_project, make_run

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def setup(db: Session) -> Any:
    owner, viewer = make_key(db), make_key(db)
    project = make_project(db, (owner, Role.OWNER), (viewer, Role.VIEWER))
    run = make_run(db, project, status="running")
    deployment = make_deployment(db, project, status="in_service")
    db.commit()
    return owner, viewer, project, run, deployment


def _post(client: TestClient, url: str, key: Any, points: list[dict[str, Any]]) -> None:
    r = client.post(url, json={"points": points}, headers=key.headers)
    assert r.status_code == 201, r.text


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_series_buckets_min_max_mean_last_count(
    client: TestClient, db: Session, setup: Any
) -> None:
    owner, viewer, _, run, _ = setup
    url = f"/v1/runs/{run.id}/metrics"
    # Ten minutes of loss, one point a minute; the 4th minute's points arrive out of order.
    points = [{"name": "loss", "value": float(m), "timestamp": _at(m)} for m in range(10)]
    points += [{"name": "loss", "value": 100.0, "timestamp": _at(3.5)}]
    points += [{"name": "loss", "value": -1.0, "timestamp": _at(3.2)}]
    points += [{"name": "acc", "value": 0.5, "timestamp": _at(m)} for m in range(0, 10, 3)]
    _post(client, url, owner, points)

    r = client.get(
        f"{url}/series",
        params={"name": "loss", "buckets": 5, "since": _at(0), "until": _at(10)},
        headers=viewer.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket_seconds"] == 120.0
    (loss,) = body["items"]
    assert loss["name"] == "loss"
    buckets = {datetime.fromisoformat(b["start"]): b for b in loss["buckets"]}
    assert list(buckets) == [T0 + 2 * MINUTE * i for i in range(5)]
    second = buckets[T0 + 2 * MINUTE]  # minutes 2, 3, 3.2, 3.5
    assert second["count"] == 4
    assert (second["min"], second["max"]) == (-1.0, 100.0)
    assert second["mean"] == pytest.approx((2 + 3 + 100 - 1) / 4)
    assert second["last"] == 100.0  # the latest timestamp, though not the last received
    assert buckets[T0 + 8 * MINUTE]["last"] == 9.0

    # Without a name: every metric, over the range they span, in shared buckets.
    every = client.get(f"{url}/series", params={"buckets": 3}, headers=viewer.headers).json()
    assert [s["name"] for s in every["items"]] == ["acc", "loss"]
    assert datetime.fromisoformat(every["since"]) == T0
    assert datetime.fromisoformat(every["until"]) == T0 + 9 * MINUTE
    assert sum(b["count"] for b in every["items"][1]["buckets"]) == 12  # the last point included
    assert sum(b["count"] for b in every["items"][0]["buckets"]) == 4


def test_series_edge_cases(client: TestClient, setup: Any) -> None:
    owner, viewer, _, run, deployment = setup
    url = f"/v1/deployments/{deployment.id}/metrics/series"
    empty = client.get(url, headers=viewer.headers)
    assert empty.status_code == 200
    assert empty.json()["items"] == []
    _post(client, f"/v1/deployments/{deployment.id}/metrics", owner, [{"name": "x", "value": 2}])
    one = client.get(url, params={"name": "x", "buckets": 10}, headers=viewer.headers).json()
    assert [(b["count"], b["last"]) for b in one["items"][0]["buckets"]] == [(1, 2.0)]
    missing = client.get(url, params={"name": "nope"}, headers=viewer.headers).json()
    assert missing["items"] == []
    for params in (
        {"since": _at(5), "until": _at(5)},
        {"buckets": 0},
        {"buckets": 1001},
        {"name": "bad name"},
    ):
        r = client.get(url, params=params, headers=viewer.headers)
        assert r.status_code in (400, 422), params
        assert r.headers["content-type"] == "application/problem+json"
    # The run's points are not the deployment's.
    assert (
        client.get(f"/v1/runs/{run.id}/metrics/series", headers=viewer.headers).json()["items"]
        == []
    )


def test_latest_value_per_name(client: TestClient, setup: Any) -> None:
    owner, viewer, _, run, _ = setup
    url = f"/v1/runs/{run.id}/metrics"
    assert client.get(f"{url}/latest", headers=viewer.headers).json() == {"items": []}
    for step in range(3):
        _post(
            client,
            url,
            owner,
            [
                {"name": name, "value": step * 10 + i, "step": step}
                for i, name in enumerate(["loss", "acc", "lr", "grad/norm"])
            ],
        )
    r = client.get(f"{url}/latest", headers=viewer.headers)
    assert r.status_code == 200
    assert [(p["name"], p["value"], p["step"]) for p in r.json()["items"]] == [
        ("acc", 21.0, 2),
        ("grad/norm", 23.0, 2),
        ("loss", 20.0, 2),
        ("lr", 22.0, 2),
    ]


def _window_points(db: Session, subject_id: Any, project_id: Any) -> dict[str, list[float]]:
    rng = random.Random(7)  # noqa: S311 - reproducible data, not secrets
    values = {"latency_ms": [rng.uniform(10, 90) for _ in range(101)], "invocations": [5.0]}
    rows = [
        ("latency_ms", None, T0 + timedelta(seconds=i), v)
        for i, v in enumerate(values["latency_ms"])
    ]
    rows += [("invocations", None, T0, 5.0), ("invocations", None, T0 - MINUTE, 99.0)]
    assert repository.add_many(db, project_id, "deployment", subject_id, rows) == len(rows)
    return values


def test_window_aggregates_for_the_optimizer(db: Session, setup: Any) -> None:
    _, _, project, _, deployment = setup
    values = _window_points(db, deployment.id, project.id)
    stats = metrics.window_aggregates(
        db,
        "deployment",
        deployment.id,
        ["latency_ms", "invocations", "unknown"],
        T0,
        T0 + timedelta(hours=1),
    )
    latency = values["latency_ms"]
    assert stats["latency_ms"].points == 101
    assert stats["latency_ms"].mean == pytest.approx(sum(latency) / 101)
    assert stats["latency_ms"].p95 == pytest.approx(sorted(latency)[95])  # 0.95 * 100 exactly
    assert stats["invocations"] == WindowStats(1, 5.0, 5.0)  # the earlier point is outside
    assert stats["unknown"] == WindowStats(0, None, None)
    # The portable percentile agrees with percentile_cont where it interpolates.
    assert aggregates.percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)


def test_sqlite_fallbacks_give_the_same_answers(
    sqlite_factory: sessionmaker[Session], setup: Any
) -> None:
    _, _, project, _, deployment = setup
    with sqlite_factory() as db:
        values = _window_points(db, deployment.id, project.id)
        stats = metrics.window_aggregates(
            db, "deployment", deployment.id, ["latency_ms", "invocations"], T0, T0 + MINUTE * 60
        )
        assert stats["latency_ms"].points == 101
        assert stats["latency_ms"].p95 == pytest.approx(sorted(values["latency_ms"])[95])
        assert stats["invocations"] == WindowStats(1, 5.0, 5.0)
        assert [p.name for p in aggregates.latest(db, deployment.id)] == [
            "invocations",
            "latency_ms",
        ]
        buckets = aggregates.series(
            db, deployment.id, "latency_ms", T0, timedelta(seconds=50), 2, None, None
        )
        assert [(b.index, b.count) for b in buckets] == [(0, 50), (1, 51)]
        assert buckets[1].last == values["latency_ms"][-1]
        # History pages by (timestamp, arrival) across names, as on PostgreSQL.
        everything = db.scalars(select(MetricPoint)).all()
        expected = [p.id for p in sorted(everything, key=lambda p: (p.timestamp, p.id))]
        seen, cursor = [], None
        while True:
            rows, cursor = repository.history(
                db, "deployment", deployment.id, PageRequest(cursor, 7)
            )
            seen += [p.id for p in rows]
            if cursor is None:
                break
        assert seen == expected
        db.commit()


def test_retention_is_set_on_the_project_and_purged(
    client: TestClient, db: Session, setup: Any
) -> None:
    owner, viewer, project, run, _ = setup
    url = f"/v1/projects/{project.id}"
    assert client.get(url, headers=viewer.headers).json()["metrics_retention_days"] is None
    r = client.patch(url, json={"metrics_retention_days": 30}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["metrics_retention_days"] == 30
    listed = client.get("/v1/projects", headers=viewer.headers).json()["items"]
    assert [p["metrics_retention_days"] for p in listed] == [30]
    bad = client.patch(url, json={"metrics_retention_days": 0}, headers=owner.headers)
    assert bad.status_code == 422

    now = datetime.now(UTC)
    other = make_project(db, (owner, Role.OWNER))  # keeps everything
    other_run = make_run(db, other)
    old, fresh = now - timedelta(days=31), now - timedelta(days=29)
    for subject, pid in ((run.id, project.id), (other_run.id, other.id)):
        rows = [("loss", i, old, 1.0) for i in range(250)] + [("loss", 0, fresh, 2.0)]
        repository.add_many(db, pid, "run", subject, rows)
    db.add(MetricBatchRecord(subject_id=run.id, batch_id="old", accepted=1, created_at=old))
    db.add(MetricBatchRecord(subject_id=run.id, batch_id="new", accepted=1, created_at=now))
    db.flush()

    day = timedelta(days=1)
    assert metrics.purge_expired(db, now, day, limit=100) == {
        "metric_points": 100,
        "metric_batches": 1,
    }
    assert metrics.purge_expired(db, now, day, limit=1000)["metric_points"] == 150
    assert metrics.purge_expired(db, now, day, limit=1000)["metric_points"] == 0
    kept = db.execute(
        select(MetricPoint.subject_id, func.count()).group_by(MetricPoint.subject_id)
    ).all()
    assert dict(kept) == {run.id: 1, other_run.id: 251}
    assert db.scalars(select(MetricBatchRecord.batch_id)).all() == ["new"]

    # null: keep forever again.
    r = client.patch(url, json={"metrics_retention_days": None}, headers=owner.headers)
    assert r.json()["metrics_retention_days"] is None
    assert metrics.retention_days(db, [project.id]) == {}


def test_history_pages_by_timestamp_across_names_and_equal_timestamps(
    client: TestClient, db: Session, setup: Any
) -> None:
    """Pages follow (timestamp, arrival) across every name, whatever order points were sent in;
    a cursor resumes exactly after the last point, also inside a run of equal timestamps."""
    owner, viewer, _, _, deployment = setup
    url = f"/v1/deployments/{deployment.id}/metrics"
    sent = []
    rng = random.Random(3)  # noqa: S311 - reproducible data, not secrets
    for i in range(60):
        minute = rng.randrange(20)  # many points share a timestamp, sent out of order
        name = rng.choice(["a", "b", "c"])
        sent.append((T0 + MINUTE * minute, i, name))
    for chunk in range(0, 60, 20):
        body = [
            {"name": name, "value": float(i), "timestamp": ts.isoformat()}
            for ts, i, name in sent[chunk : chunk + 20]
        ]
        _post(client, url, owner, body)
    expected = sorted(sent)  # by timestamp, then the order received (value i rises with it)
    for limit in (1, 7, 50):
        items, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            page = client.get(url, params=params, headers=viewer.headers)
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert [(p["name"], p["value"]) for p in items] == [(n, float(i)) for _, i, n in expected]
    # One name, and a window, page the same way.
    only_b = [(ts, i) for ts, i, n in expected if n == "b" and T0 + MINUTE * 5 <= ts]
    params = {"name": "b", "limit": 3, "since": (T0 + MINUTE * 5).isoformat()}
    items, cursor = [], None
    while True:
        page = client.get(
            url, params=params | ({"cursor": cursor} if cursor else {}), headers=viewer.headers
        )
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [p["value"] for p in items] == [float(i) for _, i in only_b]
    # The newest point of each name is the latest by timestamp, not the last sent.
    latest = client.get(f"{url}/latest", headers=viewer.headers).json()["items"]
    for point in latest:
        newest = max((ts, i) for ts, i, n in sent if n == point["name"])
        assert point["value"] == float(newest[1])


def test_deleting_a_project_queues_its_points_for_housekeeping(
    client: TestClient, db: Session, setup: Any
) -> None:
    """Points have no foreign key: the project's delete queues its runs and deployments, and
    housekeeping deletes their points in bounded batches, leaving other projects' alone."""
    owner, _, _, _, _ = setup
    doomed = make_project(db, (owner, Role.OWNER))
    run = make_run(db, doomed, status="completed")
    deployment = make_deployment(db, doomed, status="deleted")
    keep = make_project(db, (owner, Role.OWNER))
    kept_run = make_run(db, keep, status="completed")
    now = datetime.now(UTC)
    for subject, kind, pid in (
        (run.id, "run", doomed.id),
        (deployment.id, "deployment", doomed.id),
        (kept_run.id, "run", keep.id),
    ):
        rows = [("loss", i, now, float(i)) for i in range(120)]
        assert repository.add_many(db, pid, kind, subject, rows) == 120
    gone_ids, kept_id = {run.id, deployment.id}, kept_run.id
    db.commit()

    r = client.delete(f"/v1/projects/{doomed.id}", headers=owner.headers)
    assert r.status_code == 204, r.text
    db.expire_all()
    assert set(db.scalars(select(MetricPurge.subject_id))) == gone_ids
    # Nothing is deleted until housekeeping runs; then at most `limit` points per call.
    day = timedelta(days=1)
    assert metrics.purge_expired(db, now, day, limit=100)["metric_points"] == 100
    assert metrics.purge_expired(db, now, day, limit=1000)["metric_points"] == 140
    assert metrics.purge_expired(db, now, day, limit=1000)["metric_points"] == 0
    assert db.scalars(select(MetricPurge.subject_id)).all() == []
    left = db.execute(
        select(MetricPoint.subject_id, func.count()).group_by(MetricPoint.subject_id)
    ).all()
    assert dict(left) == {kept_id: 120}
