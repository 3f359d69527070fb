"""List-runs throughput at 100k runs: Stratus vs a bare Starlette app running the same SQL.

One command from a fresh clone: ``.venv/bin/python bench/read_runs.py``. It creates a scratch
database on the local PostgreSQL, migrates it, inserts 100,000 runs into one project (and
50,000 into another), then serves ``GET /v1/projects/{id}/runs`` twice, each with uvicorn and
the same number of worker processes:

- Stratus: the real app (FastAPI, SQLAlchemy ORM, pydantic read models);
- bare: a Starlette app with a small pool of psycopg connections that runs the statements
  Stratus runs for that request (key lookup, membership, the page query, same text and
  parameters), and writes the same JSON by hand.

Both get the same request mix from the same concurrent clients: no filter, each status, a
backend, a one-day created_at window, and deep pages through a cursor. Every request must
answer 200 with the same items from both. Databases and processes are removed at the end.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from support import PG, ROOT, free_port, scratch_database, server  # noqa: I001 - bench/ is on sys.path

sys.path.insert(0, str(ROOT))  # this checkout's app, whatever is installed

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

PEPPER = "bench-pepper-0123456789abcdef"
STATUSES = [("completed", 60), ("failed", 15), ("stopped", 10), ("running", 5)]
STATUSES += [("pending", 5), ("submitting", 3), ("stopping", 2)]
PAGE = 50

# --- the bare app ----------------------------------------------------------------------------

READ_FIELDS = (
    "id, project_id, name, backend, spec, status, status_reason, external_id, failure_reason, "
    "final_metrics, artifact_uri, created_by, created_at, updated_at, started_at, ended_at"
).split(", ")
KEY_SQL = "SELECT id, name, is_admin FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"
ROLE_SQL = "SELECT role FROM memberships WHERE project_id = %s AND principal_id = %s"


def create_bare() -> Any:
    """The baseline: Starlette, psycopg, the same statements, JSON written by hand."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    dsn = os.environ["BENCH_DSN"]
    pool: queue.Queue[psycopg.Connection[dict[str, Any]]] = queue.Queue()
    for _ in range(10):
        pool.put(psycopg.connect(dsn, autocommit=True, row_factory=dict_row))

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        return str(value) if isinstance(value, uuid.UUID) else value

    def list_runs(request: Request) -> Response:
        secret = request.headers.get("authorization", "").removeprefix("Bearer ")
        key_hash = hmac.new(PEPPER.encode(), secret.encode(), hashlib.sha256).hexdigest()
        project_id = uuid.UUID(request.path_params["project_id"])
        q = request.query_params
        where, params = ["project_id = %s"], [project_id]
        for name, op in (("status", "="), ("backend", "=")):
            if name in q:
                where.append(f"{name} {op} %s")
                params.append(q[name])
        if "created_after" in q:
            where.append("created_at >= %s")
            params.append(datetime.fromisoformat(q["created_after"]))
        if "created_before" in q:
            where.append("created_at < %s")
            params.append(datetime.fromisoformat(q["created_before"]))
        if "cursor" in q:
            raw = q["cursor"]
            where.append("id < %s")
            decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            params.append(uuid.UUID(decoded[2:]))
        # Every column, like the ORM's SELECT of the mapped class.
        sql = (
            f"SELECT * FROM training_runs WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY id DESC LIMIT %s"
        )
        conn = pool.get()
        try:
            key = conn.execute(KEY_SQL, (key_hash,)).fetchone()
            if key is None:
                return JSONResponse({"detail": "unauthorized"}, status_code=401)
            if conn.execute(ROLE_SQL, (project_id, key["id"])).fetchone() is None:
                return JSONResponse({"detail": "not found"}, status_code=404)
            rows = conn.execute(sql, (*params, PAGE + 1)).fetchall()
        finally:
            pool.put(conn)
        items = [{name: plain(row[name]) for name in READ_FIELDS} for row in rows[:PAGE]]
        cursor = None
        if len(rows) > PAGE:
            cursor = base64.urlsafe_b64encode(f"u:{rows[PAGE - 1]['id']}".encode())
            cursor = cursor.decode().rstrip("=")
        return JSONResponse({"items": items, "next_cursor": cursor})

    return Starlette(routes=[Route("/v1/projects/{project_id}/runs", list_runs)])


# --- data ------------------------------------------------------------------------------------


def uuid7_at(ms: int, counter: int) -> uuid.UUID:
    """A UUIDv7 for a given millisecond, so ids sort like created_at, as real ones do."""
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (counter & 0xFFF) << 64
    value |= 0b10 << 62 | random.getrandbits(62)
    return uuid.UUID(int=value)


def seed(url: str, runs: int, now: datetime) -> tuple[uuid.UUID, str]:
    """Migrate; ``runs`` runs over 100 days in one project, half as many in another."""
    from sqlalchemy import insert
    from sqlalchemy.orm import sessionmaker

    from app.db import build_engine, unit_of_work
    from app.domain.access import Role
    from app.domain.api_keys.service import issue_key
    from app.domain.projects.models import Membership, Project
    from app.domain.runs.models import TrainingRun
    from app.migrate import upgrade

    upgrade(url)
    engine = build_engine(url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    rng = random.Random(42)  # noqa: S311 - reproducible data, not secrets
    statuses = [s for s, weight in STATUSES for _ in range(weight)]
    with unit_of_work(factory) as session:
        key = issue_key(session, "reader", False, PEPPER, None)
        session.flush()
        projects = []
        for name, count in (("bench-main", runs), ("bench-other", runs // 2)):
            project = Project(name=name, description="", default_backend="local")
            session.add(project)
            session.flush()
            session.add(Membership(project_id=project.id, principal_id=key.id, role=Role.OWNER))
            projects.append((project.id, count))
    span_ms = 100 * 86_400_000
    start_ms = int((now - timedelta(days=100)).timestamp() * 1000)
    for project_id, count in projects:
        rows = []
        for i in range(count):
            ms = start_ms + span_ms * i // count
            created = datetime.fromtimestamp(ms / 1000, UTC)
            status = rng.choice(statuses)
            rows.append(
                {
                    "id": uuid7_at(ms, i),
                    "project_id": project_id,
                    "name": f"run-{i}",
                    "backend": "sagemaker" if rng.random() < 0.3 else "local",
                    "spec": {
                        "entrypoint": "train.py",
                        "instance_type": "ml.m5.xlarge",
                        "hyperparameters": {"lr": rng.random(), "epochs": rng.randint(1, 50)},
                    },
                    "status": status,
                    "final_metrics": {"loss": rng.random()} if status == "completed" else {},
                    "created_at": created,
                    "updated_at": created,
                }
            )
        with unit_of_work(factory) as session:
            for chunk in range(0, count, 5000):
                session.execute(insert(TrainingRun), rows[chunk : chunk + 5000])
    engine.dispose()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return projects[0][0], key.secret


def request_mix(project_id: uuid.UUID, runs: int, dsn: str, now: datetime) -> list[str]:
    """The URLs every client cycles through: filters, a time window, deep cursors."""
    with psycopg.connect(dsn) as conn:
        deep = conn.execute(
            "SELECT id FROM training_runs WHERE project_id = %s ORDER BY id DESC OFFSET %s LIMIT 1",
            (project_id, runs * 3 // 5),
        ).fetchone()
    assert deep is not None
    cursor = base64.urlsafe_b64encode(f"u:{deep[0]}".encode()).decode().rstrip("=")
    day = (now - timedelta(days=40)).replace(microsecond=0)
    base = f"/v1/projects/{project_id}/runs"
    queries: list[dict[str, str]] = [
        {},
        {"status": "running"},
        {"status": "failed"},
        {"status": "stopping"},
        {"backend": "sagemaker"},
        {"status": "completed", "backend": "sagemaker"},
        {
            "created_after": day.isoformat(),
            "created_before": (day + timedelta(days=1)).isoformat(),
        },
        {"cursor": cursor},
        {"status": "running", "cursor": cursor},
        {"backend": "sagemaker", "created_after": day.isoformat(), "cursor": cursor},
    ]
    return [f"{base}?{urlencode(q)}" if q else base for q in queries]


# --- load ------------------------------------------------------------------------------------


@contextmanager
def serve(app: str, env: dict[str, str], workers: int, log: Path, factory: bool) -> Iterator[int]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    cmd += ["--factory", "--app-dir", str(ROOT / "bench")] if factory else []
    with server(cmd, env, port, log, timeout_s=60):
        yield port


def fetch_all(port: int, urls: list[str], secret: str) -> list[Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pages = []
    for url in urls:
        conn.request("GET", url, headers={"Authorization": f"Bearer {secret}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {body[:300]!r}")
        page = json.loads(body)
        pages.append(([item["id"] for item in page["items"]], page["next_cursor"]))
    conn.close()
    return pages


def load(port: int, urls: list[str], secret: str, clients: int, seconds: float) -> float:
    """Requests per second of ``clients`` keep-alive clients cycling through ``urls``."""
    stop = time.monotonic() + seconds
    counts = [0] * clients
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {secret}"}
        start.wait()
        i = index
        while time.monotonic() < stop:
            conn.request("GET", urls[i % len(urls)], headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{urls[i % len(urls)]}: {response.status}")
                return
            counts[index] += 1
            i += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed; first: {failures[0]}")
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="per server per round")
    parser.add_argument("--rounds", type=int, default=3, help="Stratus/bare turns")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    now = datetime.now(UTC)
    logs = Path(tempfile.mkdtemp(prefix="stratus-bench-runs-"))
    with scratch_database("stratus_bench_runs") as name:
        dsn = f"{PG}/{name}"
        url = dsn.replace("postgresql://", "postgresql+psycopg://")
        project_id, secret = seed(url, args.runs, now)
        urls = request_mix(project_id, args.runs, dsn, now)
        stratus_env = os.environ | {
            "STRATUS_ENV": "test",
            "STRATUS_DATABASE_URL": url,
            "STRATUS_KEY_PEPPER": PEPPER,
            "STRATUS_LOG_LEVEL": "WARNING",
        }
        bare_env = os.environ | {"BENCH_DSN": dsn}
        stratus_rps, bare_rps = [], []
        with (
            serve("app.main:app", stratus_env, args.workers, logs / "stratus.log", False) as sp,
            serve("read_runs:create_bare", bare_env, args.workers, logs / "bare.log", True) as bp,
        ):
            # Same answers first: every request, page for page.
            if fetch_all(sp, urls, secret) != fetch_all(bp, urls, secret):
                raise RuntimeError("Stratus and the bare app disagree on a page")
            load(sp, urls, secret, args.clients, 1.0)  # warm-up
            load(bp, urls, secret, args.clients, 1.0)
            for r in range(args.rounds):
                stratus_rps.append(load(sp, urls, secret, args.clients, args.seconds))
                bare_rps.append(load(bp, urls, secret, args.clients, args.seconds))
                print(
                    f"round {r + 1}: Stratus {stratus_rps[-1]:,.0f} req/s, "
                    f"bare {bare_rps[-1]:,.0f} req/s",
                    flush=True,
                )
    stratus, bare = sum(stratus_rps) / len(stratus_rps), sum(bare_rps) / len(bare_rps)
    print()
    print(
        f"List runs, {args.runs:,} runs in the project ({args.runs // 2:,} in another), "
        f"{args.clients} clients, {args.workers} workers each, {len(urls)} request kinds"
    )
    print(f"  {'Stratus (FastAPI + SQLAlchemy)':<34} {stratus:>10,.0f} req/s")
    print(f"  {'bare Starlette + psycopg':<34} {bare:>10,.0f} req/s")
    print(f"  {'ratio':<34} {stratus / bare:>10.2f}x   (target >= 0.7x)")
    print(
        json.dumps(
            {
                "stratus_rps": round(stratus, 1),
                "bare_rps": round(bare, 1),
                "ratio_vs_bare": round(stratus / bare, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
