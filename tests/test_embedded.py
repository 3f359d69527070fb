"""`stratus dev` as a user runs it: no Postgres, no Redis, one command. Proves the API, the
broker, beat and the worker all work on the embedded default, and that stopping leaves nothing
behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.backends.local.examples import recommender_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="inspects child processes via /proc"),
]

STARTUP_DEADLINE_S = 60.0


def stop_local_replicas(data_dir: Path) -> int:
    """SIGTERM the local backend's endpoint controllers, then their replicas, running from
    ``data_dir``; how many processes there were.

    Endpoints outlive the server by design (a new controller adopts their replicas), so a test
    that is done with a data directory stops them itself rather than leave them to the next.
    """
    needle = str(data_dir / "local").encode()
    stopped = 0
    for module in (b"app.backends.local.controller", b"app.backends.local.serving"):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if module in cmdline and needle in cmdline:
                try:
                    os.kill(int(proc.name), signal.SIGTERM)
                    stopped += 1
                except ProcessLookupError:
                    pass
    return stopped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stratus() -> list[str]:
    script = shutil.which("stratus", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "app.cli"]


def _children(pid: int) -> dict[int, str]:
    """Every descendant of ``pid``: process id -> command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = _cmdline(child)
                frontier.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int, cmdline: str) -> bool:
    """Still alive and still the same program (not a reused pid, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _cmdline(pid) == cmdline


def _wait_for(what: str, check: Callable[[], Any], timeout: float, proc: Dev) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(
                f"stratus dev exited ({proc.popen.returncode}) before {what}:\n{proc.logs()}"
            )
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{proc.logs()}")


@dataclass
class Dev:
    """One `stratus dev` process and where its output goes."""

    popen: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    out: Path
    err: Path

    def logs(self) -> str:
        parts = [f"--- stdout\n{self.out.read_text()}", f"--- stderr\n{self.err.read_text()}"]
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text()[-4000:]}")
        return "\n".join(parts)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10, **kwargs)

    def serves_docs(self) -> bool:
        try:
            return self.get("/docs").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=60)


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[[Path], Dev]]:
    """Start `stratus dev` with none of the caller's STRATUS_* settings (no server URLs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    started: list[Dev] = []

    def start(data_dir: Path) -> Dev:
        port = _free_port()
        n = len(started)
        out, err = tmp_path / f"dev-{n}.out", tmp_path / f"dev-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [*_stratus(), "dev", "--port", str(port), "--data-dir", str(data_dir)],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        dev = Dev(popen, f"http://127.0.0.1:{port}", data_dir, out, err)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.popen.poll() is None:
            dev.popen.kill()
            dev.popen.wait()
        stop_local_replicas(dev.data_dir)


def _finished(dev: Dev, run_url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    run: dict[str, Any] = dev.get(run_url, headers=headers).json()
    return run if run["status"] in ("completed", "failed", "stopped") else None


def test_dev_runs_api_broker_beat_and_worker_with_no_servers(
    start_dev: Callable[[Path], Dev], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    dev = start_dev(data_dir)
    started = time.monotonic()
    _wait_for("/docs", dev.serves_docs, STARTUP_DEADLINE_S, dev)
    print(f"stratus dev served /docs after {time.monotonic() - started:.1f} s")  # noqa: T201

    key_file = data_dir / "admin-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    admin = {"Authorization": f"Bearer {secret}"}
    assert dev.get("/v1/projects", headers=admin).status_code == 200
    _wait_for("the admin key on stdout", lambda: secret in dev.out.read_text(), 10, dev)
    assert f"Host roots: {tmp_path.resolve()}" in dev.out.read_text()

    # A run goes API -> outbox -> beat's relay -> broker -> worker -> the local backend, which
    # trains the shipped recommender for real; the poller completes it with a model version.
    project = httpx.post(
        dev.base_url + "/v1/projects", json={"name": "demo"}, headers=admin, timeout=10
    )
    assert project.status_code == 201, project.text
    run = httpx.post(
        f"{dev.base_url}/v1/projects/{project.json()['id']}/runs",
        json={"name": "recommender", "spec": recommender_spec(epochs=3)},
        headers=admin,
        timeout=10,
    )
    assert run.status_code == 201, run.text
    run_url = f"/v1/runs/{run.json()['id']}"
    _wait_for("the run to finish", lambda: _finished(dev, run_url, admin), 90, dev)
    finished = dev.get(run_url, headers=admin).json()
    assert finished["status"] == "completed", finished
    assert set(finished["final_metrics"]) >= {"loss", "ndcg_at_10"}
    models = dev.get(f"/v1/projects/{project.json()['id']}/models", headers=admin).json()
    assert [m["source_run_id"] for m in models["items"]] == [finished["id"]]
    # As root the run trained sandboxed (its job file carries the sandbox), and dev says so.
    root = os.geteuid() == 0
    assert ("are sandboxed" if root else "trusted code only") in dev.err.read_text()
    for job_file in (data_dir / "local" / "jobs").glob("*/job.json"):
        assert (json.loads(job_file.read_text())["sandbox"] is not None) == root

    children = _children(dev.popen.pid)
    assert any(" worker" in cmd and "celery" in cmd for cmd in children.values()), children
    assert any(" beat" in cmd and "celery" in cmd for cmd in children.values()), children
    assert dev.stop() == 0
    deadline = time.monotonic() + 10
    while any(_running(pid, cmd) for pid, cmd in children.items()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pid: cmd for pid, cmd in children.items() if _running(pid, cmd)}
    assert not left, f"orphans after SIGTERM: {left}"

    # A second start on the same data dir keeps the first key and makes no new one.
    again = start_dev(data_dir)
    _wait_for("/docs on the second start", again.serves_docs, STARTUP_DEADLINE_S, again)
    assert key_file.read_text().strip() == secret
    keys = again.get("/v1/api-keys", headers=admin)
    assert keys.status_code == 200, keys.text
    assert [k["admin"] for k in keys.json()["items"]] == [True]
    _wait_for(
        "the key file's path on stdout", lambda: str(key_file) in again.out.read_text(), 10, again
    )
    assert secret not in again.out.read_text()
    assert again.stop() == 0


def test_demo_walks_the_whole_loop(start_dev: Callable[[Path], Dev], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    dev = start_dev(data_dir)
    _wait_for("/docs", dev.serves_docs, STARTUP_DEADLINE_S, dev)
    demo = subprocess.run(
        [
            *_stratus(),
            "demo",
            "--url",
            dev.base_url,
            "--data-dir",
            str(data_dir),
            "--requests",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=480,  # three trainings, three evaluations, a deployment and its roll
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Demo complete." in demo.stdout
    assert "ndcg_at_10=" in demo.stdout
    # Evaluate, then promote: the 1-epoch version is refused, the 20-epoch one rolled to.
    assert "moving production to v2 refused" in demo.stdout
    assert "Held-out evaluation of recommender v3: ndcg_at_10=" in demo.stdout
    assert "none failed" in demo.stdout
    assert "Invocation latency through Stratus: p50" in demo.stdout
    # It leaves nothing behind: its project (with the run and deployment) is gone.
    admin = {"Authorization": f"Bearer {(data_dir / 'admin-key').read_text().strip()}"}
    projects = dev.get("/v1/projects", headers=admin).json()["items"]
    assert [p["name"] for p in projects if p["name"].startswith("demo-")] == [], demo.stdout
    assert dev.stop() == 0
