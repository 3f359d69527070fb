"""Replica processes of a local endpoint: their on-disk records, start, health check, stop."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from app.backends.local import procs
from app.backends.local.jail import Jail
from app.backends.local.sandbox import SandboxSpec

STARTING, READY, DRAINING = "starting", "ready", "draining"
# The model an endpoint was created with; a model rolled to later gets a directory of its own.
MODEL_DIR = "model"


class EndpointConfig(BaseModel):
    """What the controller needs to serve an endpoint; written once into ``endpoint.json``."""

    endpoint_name: str
    artifact_uri: str
    environment: dict[str, str] = Field(default_factory=dict)
    stop_grace_s: float = 10.0
    drain_timeout_s: float = 30.0
    replica_start_timeout_s: float = 60.0
    sandbox: SandboxSpec | None = None  # None: replicas run as Stratus's own user (not root)
    created_at: str


@dataclass
class Replica:
    """One replica as the controller tracks it (``proc`` is None for one it adopted)."""

    id: str
    pid: int
    port: int
    ticks: int | None
    state: str
    started_at: float  # wall clock, for the registry
    since: float = field(default_factory=time.monotonic)  # entered the current state
    proc: subprocess.Popen[bytes] | None = None
    ready_at: float | None = None
    ping_failures: int = 0
    checked: float = 0.0
    kill_reason: str | None = None
    model: str = MODEL_DIR  # the directory of the endpoint's model it serves

    def record(self) -> dict[str, Any]:
        """The registry entry the router reads."""
        return {
            "id": self.id,
            "pid": self.pid,
            "ticks": self.ticks,
            "port": self.port,
            "state": self.state,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "model": self.model,
        }

    @classmethod
    def adopt(cls, entry: dict[str, Any]) -> Replica:
        """A replica from the registry, started by an earlier controller."""
        return cls(
            id=str(entry["id"]),
            pid=int(entry["pid"]),
            port=int(entry["port"]),
            ticks=entry.get("ticks"),
            state=str(entry["state"]),
            started_at=float(entry.get("started_at") or time.time()),
            ready_at=entry.get("ready_at"),
            model=str(entry.get("model") or MODEL_DIR),
        )


def private_dir(endpoint_dir: Path, replica_id: str) -> Path:
    """A sandboxed replica's own directory (its working directory, ``HOME`` and ``TMPDIR``)."""
    return endpoint_dir / "replicas" / replica_id


def start_replica(
    endpoint_dir: Path,
    replica_id: str,
    environment: dict[str, str],
    jail: Jail | None = None,
    model: str = MODEL_DIR,
) -> Replica:
    """Bind a loopback port, then start a replica serving the model (directory ``model`` of
    the endpoint) on it."""
    model_dir = endpoint_dir / model
    logs = endpoint_dir / "logs"
    logs.mkdir(exist_ok=True)
    cwd, preexec = model_dir, None
    if jail is not None:
        cwd = private_dir(endpoint_dir, replica_id)
        cwd.mkdir(parents=True, exist_ok=True)
        jail.give(cwd)
        # The model read-only, its own directory, and the server's code (not the checkout).
        expose = [(str(model_dir), False), (str(cwd), True), (str(procs.APP_ROOT / "app"), False)]
        preexec = jail.preexec(expose, cwd, die_with_parent=False)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = int(listener.getsockname()[1])
        env = {
            # One CPU's worth of math threads per replica: replicas are the unit of scale.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **procs.stratus_env(),
            **environment,
            "SM_MODEL_DIR": str(model_dir),
        }
        if "PYTHONPATH" in environment:  # the server itself must stay importable
            env["PYTHONPATH"] = os.pathsep.join((str(procs.APP_ROOT), environment["PYTHONPATH"]))
        if jail is not None:
            env = jail.env(env, cwd)
        argv = [sys.executable, "-m", "app.backends.local.serving", str(model_dir)]
        with (logs / f"replica-{replica_id}.log").open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [*argv, str(listener.fileno())],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
                preexec_fn=preexec,  # the controller runs no other thread
            )
    finally:
        listener.close()  # the replica holds its own copy now
    return Replica(
        id=replica_id,
        pid=proc.pid,
        port=port,
        ticks=procs.start_ticks(proc.pid),
        state=STARTING,
        started_at=time.time(),
        proc=proc,
        model=model,
    )


def ping(port: int, timeout: float) -> bool:
    """Whether the replica on ``port`` answers ``/ping`` with 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def log_tail(endpoint_dir: Path, replica_id: str, lines: int = 15) -> str:
    """The last lines a replica wrote (its traceback, usually)."""
    path = endpoint_dir / "logs" / f"replica-{replica_id}.log"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
