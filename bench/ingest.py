"""Metric ingest throughput: Stratus vs an MLflow tracking server vs raw COPY, same machine.

One command from a fresh clone: ``.venv/bin/python bench/ingest.py``. It creates scratch
databases on the local PostgreSQL, migrates Stratus, installs MLflow in its own virtualenv
(``~/.cache/stratus-bench/mlflow-venv``, first run only), starts both servers, and drives each
with the same pattern: N concurrent clients, each posting batches of 1,000 points to its own run
over one keep-alive connection. The baseline is raw binary COPY of the same batches into the
same ``metric_points`` table by the same number of connections, measured in the same run.

Stratus runs as it would be deployed on this 2-core box: ``uvicorn app.main:app --workers 2``
on PostgreSQL with the Redis broker (so the per-key ingest budget is live). MLflow gets the
same worker count. Every process and database it made is removed at the end, also on Ctrl-C.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support import PG, ROOT, free_port, scratch_database, server  # noqa: I001 - bench/ is on sys.path

sys.path.insert(0, str(ROOT))  # this checkout's app, whatever is installed

import psycopg  # noqa: E402

REDIS = os.environ.get("STRATUS_BENCH_REDIS", "redis://127.0.0.1:6379/14")
MLFLOW_VERSION = "3.17.2"
CACHE = Path.home() / ".cache" / "stratus-bench"
PEPPER = "bench-pepper-0123456789abcdef"
NAMES = [f"metric_{i}" for i in range(10)]


# --- plumbing -------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process tree, in MiB."""
    total = 0
    for member in tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by a process tree."""
    ticks = 0
    for member in tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class RssSampler:
    """Samples a process tree's RSS against the number of points stored so far."""

    pid: int
    progress: Callable[[], int]
    samples: list[tuple[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((self.progress(), tree_rss_mb(self.pid)))

    def at(self, fraction: float) -> float:
        total = self.samples[-1][0]
        return next(rss for done, rss in self.samples if done >= fraction * total)


# --- the client pattern ---------------------------------------------------------------------


def make_points(batch: int, seq: int) -> list[tuple[str, int, float, float]]:
    """One batch: 10 metric names x batch/10 steps, like a trainer logging every step."""
    rng = random.Random(seq)  # noqa: S311 - reproducible data, not secrets
    steps = batch // len(NAMES)
    base = time.time() - 86_400 + seq
    return [
        (name, seq * steps + s, base + s / 1000, rng.random())
        for s in range(steps)
        for name in NAMES
    ]


@dataclass
class Progress:
    """Points stored so far, across every drive that shares it."""

    done: int = 0


@dataclass
class Drive:
    """N clients, each sending its share of batches over one keep-alive connection."""

    port: int
    clients: int
    batches_per_client: int
    request: Callable[[int, int], tuple[str, bytes, dict[str, str]]]  # client, seq -> call
    check: Callable[[int, bytes], int]  # status, body -> points stored
    progress: Progress = field(default_factory=Progress)
    done: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> float:
        lock = threading.Lock()
        start = threading.Barrier(self.clients + 1)

        def client(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            start.wait()
            for seq in range(self.batches_per_client):
                path, body, headers = self.request(index, seq)
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                try:
                    stored = self.check(response.status, payload)
                except AssertionError as exc:
                    self.errors.append(f"{response.status} {payload[:300]!r} {exc}")
                    return
                with lock:
                    self.done += stored
                    self.progress.done += stored
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} clients failed; first: {self.errors[0]}")
        return elapsed


# --- Stratus --------------------------------------------------------------------------------


@dataclass
class StratusWorld:
    keys: list[str]
    runs: list[uuid.UUID]
    project_id: uuid.UUID


def seed_stratus(url: str, clients: int) -> StratusWorld:
    """Migrate, then one project with a run and an editor key per client."""
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
    keys, runs = [], []
    with unit_of_work(factory) as session:
        project = Project(name="bench", description="", default_backend="local")
        session.add(project)
        session.flush()
        for i in range(clients):
            key = issue_key(session, f"client-{i}", False, PEPPER, None)
            session.flush()
            session.add(Membership(project_id=project.id, principal_id=key.id, role=Role.EDITOR))
            run = TrainingRun(
                project_id=project.id,
                name=f"run-{i}",
                backend="local",
                spec={"entrypoint": "train.py", "instance_type": "local"},
                status="running",
                final_metrics={},
            )
            session.add(run)
            session.flush()
            keys.append(key.secret)
            runs.append(run.id)
        project_id = project.id
    engine.dispose()
    return StratusWorld(keys, runs, project_id)


def stratus_drive(
    port: int,
    world: StratusWorld,
    clients: int,
    batches: int,
    batch: int,
    offset: int,
    progress: Progress,
) -> Drive:
    bodies: dict[tuple[int, int], bytes] = {}
    for c in range(clients):
        for seq in range(offset, offset + batches):
            points = [
                {
                    "name": n,
                    "step": s,
                    "value": v,
                    "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
                }
                for n, s, t, v in make_points(batch, c * 10**7 + seq)
            ]
            batch_id = f"client-{c}-{seq:07d}"
            bodies[c, seq - offset] = json.dumps({"batch_id": batch_id, "points": points}).encode()

    def request(client: int, seq: int) -> tuple[str, bytes, dict[str, str]]:
        headers = {
            "Authorization": f"Bearer {world.keys[client]}",
            "Content-Type": "application/json",
        }
        return f"/v1/runs/{world.runs[client]}/metrics", bodies.pop((client, seq)), headers

    def check(status: int, body: bytes) -> int:
        assert status == 201, "expected 201"
        accepted: int = json.loads(body)["accepted"]
        assert accepted == batch, "accepted != sent"
        return accepted

    return Drive(port, clients, batches, request, check, progress)


# --- MLflow ---------------------------------------------------------------------------------


def mlflow_venv() -> Path:
    """MLflow in its own virtualenv (never in Stratus's), installed on first use."""
    venv = CACHE / "mlflow-venv"
    marker = venv / f".mlflow-{MLFLOW_VERSION}"
    if not marker.exists():
        print(f"installing MLflow {MLFLOW_VERSION} into {venv} (first run only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"mlflow=={MLFLOW_VERSION}",
                "psycopg[binary]",
            ],
            check=True,
        )
        marker.touch()
    return venv


def mlflow_call(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"MLflow {path}: {response.status} {payload[:300]!r}")
    result: dict[str, Any] = json.loads(payload)
    return result


def mlflow_drive(port: int, clients: int, batches: int, batch: int) -> Drive:
    runs = [
        mlflow_call(port, "/api/2.0/mlflow/runs/create", {"experiment_id": "0"})["run"]["info"][
            "run_id"
        ]
        for _ in range(clients)
    ]
    bodies: dict[tuple[int, int], bytes] = {}
    for c in range(clients):
        for seq in range(batches):
            metrics = [
                {"key": n, "value": v, "timestamp": int(t * 1000), "step": s}
                for n, s, t, v in make_points(batch, c * batches + seq)
            ]
            bodies[c, seq] = json.dumps({"run_id": runs[c], "metrics": metrics}).encode()

    def request(client: int, seq: int) -> tuple[str, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json"}
        return "/api/2.0/mlflow/runs/log-batch", bodies.pop((client, seq)), headers

    def check(status: int, _body: bytes) -> int:
        assert status == 200, "expected 200"
        return batch

    return Drive(port, clients, batches, request, check)


# --- raw COPY -------------------------------------------------------------------------------


def copy_baseline(
    dsn: str, world: StratusWorld, clients: int, batches: int, batch: int, offset: int
) -> float:
    """Binary COPY of prepared batches, one connection per client, a commit per batch."""
    columns = "project_id, subject_type, subject_id, name, step, timestamp, value"
    sql = f"COPY metric_points ({columns}) FROM STDIN (FORMAT BINARY)"
    types = ["uuid", "varchar", "uuid", "varchar", "int8", "timestamptz", "float8"]
    payloads: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    for c in range(clients):
        for seq in range(batches):
            payloads[c, seq] = [
                (world.project_id, "run", world.runs[c], n, s, datetime.fromtimestamp(t, UTC), v)
                for n, s, t, v in make_points(batch, c * 10**7 + offset + seq)
            ]
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with psycopg.connect(dsn) as conn:
            start.wait()
            for seq in range(batches):
                with conn.cursor() as cursor, cursor.copy(sql) as copy:
                    copy.set_types(types)
                    for row in payloads.pop((index, seq)):
                        copy.write_row(row)
                conn.commit()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def reset_table(dsn: str) -> None:
    """An empty, checkpointed table, so every phase starts from the same state."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_points, metric_batches")
        conn.execute("CHECKPOINT")


def count_points(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="points per request")
    parser.add_argument("--points", type=int, default=1_000_000, help="for Stratus and COPY")
    parser.add_argument("--mlflow-points", type=int, default=200_000, help="MLflow is slower")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes, both")
    parser.add_argument("--rounds", type=int, default=4, help="COPY/Stratus turns")
    parser.add_argument(
        "--skip-mlflow",
        action="store_true",
        help="only COPY vs Stratus, for quick iterations (no ratio_vs_mlflow)",
    )
    args = parser.parse_args()
    clients, batch = args.clients, args.batch
    batches = max(1, args.points // (clients * batch))
    mlflow_batches = max(1, args.mlflow_points // (clients * batch))
    venv = None if args.skip_mlflow else mlflow_venv()
    logs = Path(tempfile.mkdtemp(prefix="stratus-bench-"))
    results: dict[str, Any] = {}

    with scratch_database("stratus_bench") as stratus_db:
        dsn = f"{PG}/{stratus_db}"
        world = seed_stratus(dsn.replace("postgresql://", "postgresql+psycopg://"), clients)

        # Raw COPY and Stratus take turns in rounds on the same table, so a neighbour's load
        # on this shared machine weighs on both alike; the API's memory is sampled throughout.
        port = free_port()
        env = os.environ | {
            "STRATUS_ENV": "prod",
            "STRATUS_DATABASE_URL": dsn.replace("postgresql://", "postgresql+psycopg://"),
            "STRATUS_BROKER_URL": REDIS,
            "STRATUS_KEY_PEPPER": PEPPER,
            "STRATUS_LOG_LEVEL": "WARNING",
            # A production API process: no local backend next to it (as in the Compose stack).
            "STRATUS_BACKENDS__LOCAL__ENABLED": "false",
        }
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        per_round = max(1, -(-batches // args.rounds))  # at least --points in all
        copy_s = stratus_s = cpu = 0.0
        copied = 0
        progress = Progress()
        with server(cmd, env, port, logs / "stratus.log") as pid:
            stratus_drive(port, world, clients, 2, batch, 10**6, Progress()).run()  # warm-up
            reset_table(dsn)
            with RssSampler(pid, lambda: progress.done) as rss:
                for r in range(args.rounds):
                    offset = r * per_round
                    before = count_points(dsn, "metric_points")
                    elapsed = copy_baseline(dsn, world, clients, per_round, batch, offset)
                    middle = count_points(dsn, "metric_points")
                    copy_s += elapsed
                    copied += middle - before
                    drive = stratus_drive(port, world, clients, per_round, batch, offset, progress)
                    cpu -= tree_cpu_s(pid)
                    took = drive.run()
                    cpu += tree_cpu_s(pid)
                    stratus_s += took
                    stored = count_points(dsn, "metric_points") - middle
                    if stored != drive.done:
                        raise RuntimeError(f"Stratus accepted {drive.done:,}, stored {stored:,}")
                    print(
                        f"round {r + 1}: COPY {(middle - before) / elapsed:,.0f} rows/s, "
                        f"Stratus {drive.done / took:,.0f} points/s",
                        flush=True,
                    )
        stored = count_points(dsn, "metric_points") - copied
        results["copy_rows_per_s"] = copied / copy_s
        results["copy_rows"] = copied
        results["stratus_points_per_s"] = progress.done / stratus_s
        results["stratus_points"] = progress.done
        results["stratus_stored_points"] = stored
        results["stratus_api_cpu_ms_per_1k_points"] = round(cpu * 1e6 / progress.done, 2)
        results["stratus_api_rss_start_mb"] = round(rss.samples[0][1], 1)
        results["stratus_api_rss_quarter_mb"] = round(rss.at(0.25), 1)
        results["stratus_api_rss_end_mb"] = round(rss.samples[-1][1], 1)
        results["stratus_api_rss_peak_mb"] = round(max(r for _, r in rss.samples), 1)

    results["ratio_vs_copy"] = results["stratus_points_per_s"] / results["copy_rows_per_s"]
    if venv is None:
        report(args, results)
        return
    # 3. MLflow's tracking server on its own database of the same PostgreSQL.
    with scratch_database("mlflow_bench") as mlflow_db:
        uri = f"{PG}/{mlflow_db}".replace("postgresql://", "postgresql+psycopg://")
        python = str(venv / "bin" / "python")
        init = (
            "import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
            "SqlAlchemyStore(sys.argv[1], sys.argv[2])"
        )
        subprocess.run([python, "-c", init, uri, str(logs / "artifacts")], check=True)
        port = free_port()
        cmd = [
            str(venv / "bin" / "mlflow"),
            "server",
            "--backend-store-uri",
            uri,
            "--default-artifact-root",
            str(logs / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ]
        env = os.environ | {"MLFLOW_LOGGING_LEVEL": "WARNING"}
        with server(cmd, env, port, logs / "mlflow.log"):
            mlflow_drive(port, clients, 1, batch).run()
            drive = mlflow_drive(port, clients, mlflow_batches, batch)
            elapsed = drive.run()
        warm_up = clients * batch
        mlflow_stored = count_points(f"{PG}/{mlflow_db}", "metrics") - warm_up
        results["mlflow_points_per_s"] = drive.done / elapsed
        results["mlflow_points"] = drive.done
        results["mlflow_stored_points"] = mlflow_stored
        print(f"MLflow: {drive.done:,} points in {elapsed:.1f} s", flush=True)

    results["ratio_vs_mlflow"] = results["stratus_points_per_s"] / results["mlflow_points_per_s"]
    report(args, results)


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print()
    print(
        f"Metric ingest, {args.clients} clients x {args.batch}-point batches, "
        f"{args.workers} API workers, {args.rounds} COPY/Stratus rounds, "
        f"PostgreSQL on this host ({os.cpu_count()} cores)"
    )
    rows = [
        (
            f"raw COPY, same table ({r['copy_rows']:,} rows)",
            f"{r['copy_rows_per_s']:,.0f} rows/s",
            "baseline",
        ),
        (
            f"Stratus ({r['stratus_points']:,} points)",
            f"{r['stratus_points_per_s']:,.0f} points/s",
            f"{r['ratio_vs_copy']:.2f}x COPY (target >= 0.5x)",
        ),
    ]
    mlflow = "mlflow_points_per_s" in r  # absent with --skip-mlflow
    if mlflow:
        rows.append(
            (
                f"MLflow {MLFLOW_VERSION} ({r['mlflow_points']:,} points)",
                f"{r['mlflow_points_per_s']:,.0f} points/s",
                f"Stratus is {r['ratio_vs_mlflow']:.1f}x (target >= 10x)",
            )
        )
    for name, rate, note in rows:
        print(f"  {name:<34} {rate:>20}   {note}")
    stored = r["stratus_stored_points"], r["stratus_points"]
    line = f"  stored = accepted: Stratus {stored[0]:,} / {stored[1]:,}"
    if mlflow:
        line += f"; MLflow {r['mlflow_stored_points']:,} / {r['mlflow_points']:,}"
    print(line)
    print(
        "  Stratus API CPU per 1,000 points (all workers): "
        f"{r['stratus_api_cpu_ms_per_1k_points']} ms"
    )
    print(
        "  Stratus API RSS (all workers, MiB): "
        f"start {r['stratus_api_rss_start_mb']}, after 25% {r['stratus_api_rss_quarter_mb']}, "
        f"end {r['stratus_api_rss_end_mb']}, peak {r['stratus_api_rss_peak_mb']}"
    )
    keys = ["stratus_points_per_s", "mlflow_points_per_s", "copy_rows_per_s"]
    out: dict[str, Any] = {k: round(r[k], 1) if k in r else None for k in keys}
    out["ratio_vs_mlflow"] = round(r["ratio_vs_mlflow"], 2) if mlflow else None
    out["ratio_vs_copy"] = round(r["ratio_vs_copy"], 3)
    out |= {
        k: r.get(k)
        for k in (
            "stratus_points",
            "stratus_stored_points",
            "mlflow_points",
            "stratus_api_cpu_ms_per_1k_points",
            "stratus_api_rss_start_mb",
            "stratus_api_rss_quarter_mb",
            "stratus_api_rss_end_mb",
            "stratus_api_rss_peak_mb",
        )
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
