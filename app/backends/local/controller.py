"""The controller of one local endpoint: ``python -m app.backends.local.controller ENDPOINT_DIR``.

It keeps the number of ready replicas at the desired count in ``desired.json``: starts
replicas, marks surplus ones draining (the router stops picking them) before it stops them,
replaces replicas that crash or stop answering ``/ping``, and records each of these in
``events.jsonl``. It is the only writer of ``registry.json``. It holds ``controller.lock``
while it lives; a new controller adopts the replicas an earlier one left running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from app.backends.local import procs
from app.backends.local.files import acquire_lock, append_line, now, read_json, to_iso, write_json
from app.backends.local.jail import Jail, open_jail
from app.backends.local.replicas import (
    DRAINING,
    MODEL_DIR,
    READY,
    STARTING,
    EndpointConfig,
    Replica,
    log_tail,
    ping,
    private_dir,
    start_replica,
)
from app.backends.local.stats import prune_stats

TICK_S = 0.1
HEALTH_EVERY_S = 1.0
PING_TIMEOUT_S = 2.0
STARTING_PING_S = 0.5
UNHEALTHY_AFTER = 3  # failed pings in a row before a replica is replaced
FAILED_AFTER = 3  # failed starts in a row, before ever serving, before the endpoint fails
BACKOFF_MAX_S = 30.0
CRASH_LOOP_S = 10.0  # a replica that dies sooner than this after becoming ready is backed off
PRUNE_EVERY_S = 600.0


class Controller:
    """Reconciles an endpoint's replicas with its desired count, one tick at a time."""

    def __init__(self, endpoint_dir: Path, config: EndpointConfig) -> None:
        self.dir = endpoint_dir
        self.config = config
        self.replicas: dict[str, Replica] = {}
        self.next_id = 1
        self.in_service_once = False
        self.failure: str | None = None
        self.start_failures = 0
        self.next_start = 0.0
        self.stopping = False
        self.desired = 0
        self.model = MODEL_DIR  # the model replicas should serve (desired.json names it)
        self._shared = {MODEL_DIR}  # models the sandbox uid has been given to read
        self._saved = ""
        self._ready_count = -1
        self._pruned = 0.0
        self.jail: Jail | None = None
        self.uid: int | None = None  # the endpoint's sandbox uid, kept across controllers

    def event(self, event: str, replica: str | None = None, reason: str | None = None) -> None:
        """Append one line to ``events.jsonl``."""
        record = {"timestamp": to_iso(now()), "event": event, "replica": replica, "reason": reason}
        append_line(self.dir / "events.jsonl", _dumps(record))

    def run(self) -> None:
        """Adopt what an earlier controller left, then reconcile until deleted or told to stop."""
        self._adopt()
        self._open_jail()
        while not (self.stopping or (self.dir / "deleting").exists()):
            desired = read_json(self.dir / "desired.json") or {}
            self.desired = int(desired.get("count", 0))
            self.model = str(desired.get("model") or MODEL_DIR)
            self._reap()
            self._watch()
            self._reconcile()
            self._save()
            if time.monotonic() - self._pruned > PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                prune_stats(self.dir)
            time.sleep(TICK_S)
        self._shut_down()

    def _adopt(self) -> None:
        registry = read_json(self.dir / "registry.json") or {}
        self.next_id = int(registry.get("next_id", 1))
        self.in_service_once = bool(registry.get("in_service_once", False))
        self.failure = registry.get("failure")
        self.uid = registry.get("uid")
        adopted = 0
        for entry in registry.get("replicas", []):
            replica = Replica.adopt(entry)
            if not procs.is_alive(replica.pid, replica.ticks):
                self.event("replica_vanished", replica.id, "gone while no controller watched it")
                continue
            self.replicas[replica.id] = replica
            adopted += 1
            if replica.state == DRAINING:
                procs.signal_pid(replica.pid, signal.SIGTERM)
        self.event("controller_started", reason=f"adopted {adopted} running replica(s)")

    def _open_jail(self) -> None:
        """Lease the endpoint's uid (the one its adopted replicas run as) and share the model."""
        self.jail, problem = open_jail(self.config.sandbox, prefer=self.uid)
        if self.jail is not None:
            for note in self.jail.notes:
                self.event("sandbox", reason=note)
            if self.replicas and self.uid is not None and self.jail.uid != self.uid:
                problem = f"the uid {self.uid} its replicas run as could not be leased again"
            self.uid = self.jail.uid
            self.jail.give_readable(self.dir / "model")
            if problem is None and not self.jail.spec.namespaces:
                problem = self.jail.check_reachable(self.dir / "model")
            if problem is None and not self.jail.spec.namespaces:
                problem = self.jail.check_interpreter(self.dir / "model")
        if problem is not None and self.failure is None:
            self.failure = problem
            self.event("endpoint_failed", reason=problem)

    def _reap(self) -> None:
        exited = dict(procs.reap())
        for replica in list(self.replicas.values()):
            if replica.proc is not None and replica.pid in exited:
                replica.proc.returncode = exited[replica.pid]
                self._exited(replica, procs.describe_exit(exited[replica.pid]))
            elif replica.proc is None and not procs.is_alive(replica.pid, replica.ticks):
                self._exited(replica, "exited")

    def _exited(self, replica: Replica, how: str) -> None:
        del self.replicas[replica.id]
        shutil.rmtree(private_dir(self.dir, replica.id), ignore_errors=True)
        reason = replica.kill_reason or how
        if replica.state == DRAINING:
            self.event("replica_stopped", replica.id, f"drained; {how}")
        elif replica.state == READY:
            self.event("replica_crashed", replica.id, f"{reason}; starting a replacement")
            if time.monotonic() - replica.since < CRASH_LOOP_S:  # crashing soon after starting
                self._back_off()
        else:
            detail = f"{reason} before it was ready"
            tail = log_tail(self.dir, replica.id)
            self.event("replica_start_failed", replica.id, f"{detail}\n{tail}".strip())
            self._back_off()
            if not self.in_service_once and self.start_failures >= FAILED_AFTER:
                self.failure = f"replica {replica.id} {detail}:\n{tail}".strip()[:4000]
                self.event("endpoint_failed", reason=self.failure)

    def _back_off(self) -> None:
        """Delay the next start exponentially, so a replica that cannot run does not spin."""
        self.start_failures += 1
        delay = min(BACKOFF_MAX_S, 0.5 * 2 ** (self.start_failures - 1))
        self.next_start = time.monotonic() + delay

    def _watch(self) -> None:
        clock = time.monotonic()
        for replica in self.replicas.values():
            if replica.state == STARTING:
                # Short: a replica still importing has not started answering; "not yet" is fine.
                if ping(replica.port, STARTING_PING_S):
                    replica.state, replica.since, replica.ready_at = READY, clock, time.time()
                    self.event("replica_ready", replica.id, f"port {replica.port}")
                elif clock - replica.since > self.config.replica_start_timeout_s:
                    self._kill(replica, "did not load its model in time")
            elif replica.state == READY and clock - replica.checked >= HEALTH_EVERY_S:
                replica.checked = clock
                if clock - replica.since > CRASH_LOOP_S:  # it runs steadily: forget the past
                    self.start_failures = 0
                replica.ping_failures = (
                    0 if ping(replica.port, PING_TIMEOUT_S) else (replica.ping_failures + 1)
                )
                if replica.ping_failures >= UNHEALTHY_AFTER:
                    self._kill(replica, f"failed {UNHEALTHY_AFTER} health checks in a row")
            elif replica.state == DRAINING:
                limit = self.config.drain_timeout_s + self.config.stop_grace_s
                if clock - replica.since > limit and replica.kill_reason is None:
                    self._kill(replica, "did not finish draining in time")

    def _kill(self, replica: Replica, reason: str) -> None:
        replica.kill_reason = f"was killed: it {reason}"
        procs.signal_group(replica.pid, signal.SIGKILL)

    def _reconcile(self) -> None:
        desired = self.desired
        if self.failure is not None:
            return
        serving = [r for r in self.replicas.values() if r.state in (STARTING, READY)]
        # A new model rolls in: replicas of the old one serve until as many of the new one
        # are ready, then drain, so requests always find a ready replica.
        active = [r for r in serving if r.model == self.model]
        stale = [r for r in serving if r.model != self.model]
        if stale and sum(r.state == READY for r in active) >= desired:
            for replica in stale:
                self._drain(replica, f"replaced by replicas serving {self.model}")
        if len(active) < desired and time.monotonic() >= self.next_start:
            self._share_model()
            for _ in range(desired - len(active)):
                replica_id = f"r{self.next_id}"
                self.next_id += 1
                try:
                    replica = start_replica(
                        self.dir, replica_id, self.config.environment, self.jail, self.model
                    )
                except OSError as exc:  # out of processes or descriptors: try again later
                    self.event("replica_start_failed", replica_id, str(exc))
                    self._back_off()
                    return
                self.replicas[replica_id] = replica
                self.event("replica_started", replica_id, f"pid {replica.pid}, toward {desired}")
        elif len(active) > desired:
            # Replicas still loading go first; then the newest ready ones.
            order = sorted(active, key=lambda r: (r.state == READY, -r.started_at))
            for replica in order[: len(active) - desired]:
                self._drain(replica, f"scaling in to {desired}")

    def _share_model(self) -> None:
        """Let the sandbox uid read a model rolled to since the controller started."""
        if self.jail is not None and self.model not in self._shared:
            self.jail.give_readable(self.dir / self.model)
        self._shared.add(self.model)

    def _drain(self, replica: Replica, reason: str) -> None:
        replica.state, replica.since = DRAINING, time.monotonic()
        self._save()  # the router must stop picking it before it is told to stop
        self.event("replica_draining", replica.id, reason)
        procs.signal_pid(replica.pid, signal.SIGTERM)

    def _save(self) -> None:
        ready = sum(r.state == READY for r in self.replicas.values())
        busy = any(r.state != READY for r in self.replicas.values())
        if ready >= self.desired and not busy and self.failure is None:
            self.in_service_once = True
        registry = {
            "replicas": [r.record() for r in sorted(self.replicas.values(), key=_order)],
            "next_id": self.next_id,
            "in_service_once": self.in_service_once,
            "failure": self.failure,
            "uid": self.uid,
        }
        text = _dumps(registry)
        if text != self._saved:
            write_json(self.dir / "registry.json", registry)
            self._saved = text
        if ready != self._ready_count:
            self._ready_count = ready
            append_line(self.dir / "capacity.jsonl", _dumps({"t": time.time(), "ready": ready}))

    def _shut_down(self) -> None:
        for replica in list(self.replicas.values()):
            if replica.state != DRAINING:
                self._drain(replica, "the endpoint is being deleted")
        while self.replicas:
            self._reap()
            self._watch()
            self._save()
            time.sleep(TICK_S)
        if self.jail is not None:
            self.jail.close()
        self.event("controller_stopped")


def _order(replica: Replica) -> int:
    return int(replica.id.lstrip("r") or 0)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def main(argv: list[str]) -> int:
    """Control the endpoint in ``argv[0]``; a second controller of the same endpoint exits."""
    endpoint_dir = Path(argv[0]).resolve()
    if acquire_lock(endpoint_dir / "controller.lock", wait_s=5.0) is None:
        return 0
    config = EndpointConfig.model_validate_json((endpoint_dir / "endpoint.json").read_text())
    procs.become_subreaper()
    controller = Controller(endpoint_dir, config)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        controller.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    pid = os.getpid()
    write_json(endpoint_dir / "controller.json", {"pid": pid, "ticks": procs.start_ticks(pid)})
    controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
