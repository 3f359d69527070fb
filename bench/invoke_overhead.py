"""What Stratus adds to a model request: replicas hit directly vs ``POST .../invocations``.

Starts the production shape on this host: a scratch PostgreSQL database, Redis, ``stratus
api`` (half as many workers as cores unless ``--workers``, since the replicas and this
client run on the same cores), a worker and beat; trains the shipped
recommender on the local backend and deploys it with 2 replicas. Then, in one run, for 1
client and for 8 concurrent keep-alive clients, it measures the replicas hit directly (round
robin by the bench client) and the same requests through Stratus. The client is a small
asyncio HTTP/1.1 loop (one connection per client and target, requests prebuilt), so it costs
both sides alike and little.

Prints a table, then one JSON object as the last line: direct_rps_8, stratus_rps_8,
ratio_rps_8, direct_p50_ms_1, stratus_p50_ms_1, added_p50_ms_1, added_p95_ms_8, errors.
Targets: added_p50_ms_1 <= 1.0, ratio_rps_8 >= 0.6, errors = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import PG, ROOT, background, free_port, scratch_database, server

REDIS = os.environ.get("STRATUS_BENCH_REDIS", "redis://127.0.0.1:6379/13")
PEPPER = "bench-pepper-0123456789abcdef"
STRATUS = str(Path(sys.executable).with_name("stratus"))
BODY = json.dumps({"user": 7, "k": 10}).encode()


@dataclass
class Sample:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request_bytes(path: str, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\n{auth}Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response (Content-Length framed); its status, and whether the server keeps
    the connection open (a replica speaks HTTP/1.0: one request per connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    keep = lines[0].startswith(b"HTTP/1.1")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value.strip().lower() == b"keep-alive"
    await reader.readexactly(length)
    return status, keep


async def _client(
    targets: list[tuple[int, bytes]], until: float, sample: Sample, offset: int
) -> None:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * len(targets)
    turn = offset
    try:
        while time.perf_counter() < until:
            index = turn % len(targets)
            turn += 1
            began = time.perf_counter()
            conn = conns[index]
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", targets[index][0])
                conn[1].write(targets[index][1])
                status, keep = await _answer(conn[0])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                sample.errors += 1
                status, keep = 0, False
            if not keep and conn is not None:
                conn[1].close()
            conns[index] = conn if keep else None
            if status == 0:
                continue
            if status == 200:
                sample.latencies_ms.append((time.perf_counter() - began) * 1000)
            else:
                sample.errors += 1
    finally:
        for conn in conns:
            if conn is not None:
                conn[1].close()


def measure(targets: list[tuple[int, bytes]], clients: int, seconds: float) -> Sample:
    """``clients`` keep-alive clients sending back to back for ``seconds``."""
    sample = Sample()

    async def run() -> None:
        until = time.perf_counter() + seconds
        began = time.perf_counter()
        await asyncio.gather(*(_client(targets, until, sample, i) for i in range(clients)))
        sample.seconds = time.perf_counter() - began

    asyncio.run(run())
    return sample


def stratus(*args: str, env: dict[str, str]) -> str:
    cmd = [STRATUS, *args]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)  # noqa: S603
    return done.stdout.strip()


@contextmanager
def production_stack(workers: int, logs: Path) -> Iterator[tuple[int, str, Path]]:
    """PostgreSQL + Redis + API + worker + beat; yields (api port, admin key, local work dir)."""
    with ExitStack() as stack:
        db = stack.enter_context(scratch_database("stratus_invoke"))
        data_dir = logs / "data"
        env = os.environ | {
            "STRATUS_ENV": "prod",
            "STRATUS_DATABASE_URL": f"{PG}/{db}".replace("postgresql://", "postgresql+psycopg://"),
            "STRATUS_BROKER_URL": REDIS,
            "STRATUS_KEY_PEPPER": PEPPER,
            "STRATUS_LOG_LEVEL": "WARNING",
            "STRATUS_DATA_DIR": str(data_dir),
            "STRATUS_BACKENDS__LOCAL__ALLOW_IN_PROD": "true",
            "STRATUS_BACKENDS__LOCAL__POLL_INTERVAL_S": "1",
        }
        stratus("db", "upgrade", env=env)
        key = stratus("admin", "create-key", "--name", "bench", env=env).splitlines()[-1]
        celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app"]
        worker = [*celery, "worker", "--pool=threads", "--concurrency=4", "--loglevel=WARNING"]
        beat = [*celery, "beat", "--scheduler", "workers.beat:GuardedScheduler"]
        stack.enter_context(background(worker, env, logs / "worker.log"))
        stack.enter_context(background(beat, env, logs / "beat.log"))
        port = free_port()
        api = [STRATUS, "api", "--port", str(port)]
        stack.enter_context(server([*api, "--workers", str(workers)], env, port, logs / "api.log"))
        yield port, key, (data_dir / "local").resolve()


@contextmanager
def recommender(url: str, key: str) -> Iterator[str]:
    """The recommender, trained briefly and deployed with 2 replicas: its deployment id. The
    project is deleted on exit, so no replica outlives the benchmark."""
    from app.demo import Demo, DemoFailed

    demo = Demo(url, key)
    project_id = demo.create_project()
    try:
        run = demo.train(project_id, epochs=3)
        model = demo.model_of(project_id, run["id"])
        yield str(demo.deploy(project_id, model["id"], 2)["id"])
    finally:
        try:
            demo.clean_up(project_id)
        except DemoFailed as failure:
            print(f"could not clean up: {failure}", file=sys.stderr)  # noqa: T201


def replica_ports(work_dir: Path, deployment_id: str) -> list[int]:
    from app.backends.naming import endpoint_name

    registry = work_dir / "endpoints" / endpoint_name(uuid.UUID(deployment_id))
    entries = json.loads((registry / "registry.json").read_text())["replicas"]
    return sorted(int(e["port"]) for e in entries if e.get("state") == "ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="API workers (default: half the cores; the replicas and this client take the rest)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=8, help="direct/Stratus turns")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="stratus-invoke-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what was started, then exit
    with (
        production_stack(args.workers, logs) as (port, key, work_dir),
        recommender(f"http://127.0.0.1:{port}", key) as deployment_id,
    ):
        ports = replica_ports(work_dir, deployment_id)
        direct = [(p, request_bytes("/invocations", None)) for p in ports]
        via = [(port, request_bytes(f"/v1/deployments/{deployment_id}/invocations", key))]
        measure(direct, 8, 2.0)
        measure(via, 8, 3.0)  # warm-up: every API worker has its caches and connections
        results: dict[tuple[str, int], Sample] = {}
        # Direct and Stratus take turns, so a neighbour's load weighs on both alike.
        for _ in range(args.rounds):
            for clients in (1, 8):
                for name, targets in (("direct", direct), ("stratus", via)):
                    got = measure(targets, clients, args.seconds / args.rounds)
                    into = results.setdefault((name, clients), Sample())
                    into.latencies_ms += got.latencies_ms
                    into.errors += got.errors
                    into.seconds += got.seconds
    report(args, len(ports), results)


def report(args: argparse.Namespace, replicas: int, r: dict[tuple[str, int], Sample]) -> None:
    print(  # noqa: T201
        f"Invocation overhead: recommender, {args.seconds:g} s per cell; "
        f"{args.workers} API workers, {replicas} local replicas and this client share "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':<18}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}")  # noqa: T201
    for (name, clients), s in sorted(r.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(  # noqa: T201
            f"{name + f' x{clients}':<18}{s.rps:>10.0f}{s.pct(0.5):>10.2f}"
            f"{s.pct(0.95):>10.2f}{s.pct(0.99):>10.2f}{s.errors:>8}"
        )
    out: dict[str, Any] = {
        "direct_rps_8": round(r["direct", 8].rps, 1),
        "stratus_rps_8": round(r["stratus", 8].rps, 1),
        "ratio_rps_8": round(r["stratus", 8].rps / r["direct", 8].rps, 3),
        "direct_p50_ms_1": round(r["direct", 1].pct(0.5), 3),
        "stratus_p50_ms_1": round(r["stratus", 1].pct(0.5), 3),
        "added_p50_ms_1": round(r["stratus", 1].pct(0.5) - r["direct", 1].pct(0.5), 3),
        "added_p95_ms_8": round(r["stratus", 8].pct(0.95) - r["direct", 8].pct(0.95), 3),
        "errors": sum(s.errors for s in r.values()),
    }
    print(  # noqa: T201
        f"added p50 (1 client) {out['added_p50_ms_1']} ms (target <= 1.0); "
        f"throughput ratio (8 clients) {out['ratio_rps_8']} (target >= 0.6); "
        f"mean direct latency {statistics.fmean(r['direct', 1].latencies_ms):.2f} ms"
    )
    print(json.dumps(out))  # noqa: T201


if __name__ == "__main__":
    main()
