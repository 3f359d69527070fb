"""A local job's status, read from its files: what any process polling the job sees.

The supervisor's lock says whether it lives (a lock dies with its holder, whatever the pid
does next); ``status.json`` says how the job ended. A job whose supervisor is gone without a
final status has failed, and whatever it left running is killed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.backends.base import JobState, JobStatus
from app.backends.local import procs
from app.backends.local.contract import JobConfig
from app.backends.local.files import from_iso, lock_held, now, publish_json, read_json, to_iso

LAUNCH_GRACE_S = 10.0  # a published job with no launch record after this was never launched
VANISHED = "the supervisor process vanished (killed, or the machine restarted) before the job ended"
RUNNING_PHASES = {"Starting": JobState.STARTING, "Stopping": JobState.RUNNING}


def read_status(name: str, job_dir: Path, relaunch: Callable[[Path], None]) -> JobStatus:
    """The status of the job in ``job_dir``; ``relaunch`` starts a supervisor never started."""
    final = read_json(job_dir / "status.json")
    if final is not None:
        return _final(name, final)
    state = read_json(job_dir / "state.json")
    alive = lock_held(job_dir / "supervisor.lock")
    if state is None:
        launch = read_json(job_dir / "launch.json")
        if launch is None:
            age = time.time() - (job_dir / "job.json").stat().st_mtime
            if age > LAUNCH_GRACE_S:  # the submitter died between publishing and launching
                relaunch(job_dir)
            return _live(name, job_dir, None)
        if alive or procs.is_alive(launch.get("pid"), launch.get("ticks")):
            return _live(name, job_dir, None)
    elif alive:
        return _live(name, job_dir, state)
    # The supervisor is gone. It may have finished just now, or started after our read.
    final = read_json(job_dir / "status.json")
    if final is not None:
        return _final(name, final)
    if state is None and (job_dir / "state.json").exists():
        return read_status(name, job_dir, relaunch)
    return _vanished(name, job_dir, state)


def _live(name: str, job_dir: Path, state: Mapping[str, Any] | None) -> JobStatus:
    phase = str(state.get("phase", "Starting")) if state else "Starting"
    job_state = RUNNING_PHASES.get(phase, JobState.RUNNING)
    if (job_dir / "stop").exists():
        job_state = JobState.STOPPING
    started = from_iso(state.get("started_at")) if state and phase != "Starting" else None
    count = JobConfig.model_validate_json((job_dir / "job.json").read_text()).instance_count
    billable = (now() - started).total_seconds() * count if started else None
    return JobStatus(
        job_name=name,
        external_id=name,
        state=job_state,
        secondary_status=phase,
        started_at=started,
        billable_seconds=billable,
    )


def _final(name: str, final: Mapping[str, Any]) -> JobStatus:
    metrics = final.get("final_metrics") or {}
    billable = final.get("billable_seconds")
    return JobStatus(
        job_name=name,
        external_id=name,
        state=JobState(final["state"]),
        failure_reason=final.get("failure_reason"),
        artifact_uri=final.get("artifact_uri"),
        final_metrics={str(k): float(v) for k, v in metrics.items()},
        started_at=from_iso(final.get("started_at")),
        ended_at=from_iso(final.get("ended_at")),
        secondary_status=final.get("secondary_status"),
        billable_seconds=float(billable) if billable is not None else None,
    )


def _vanished(name: str, job_dir: Path, state: Mapping[str, Any] | None) -> JobStatus:
    """Fail a job whose supervisor died, killing whatever of it still runs."""
    for host in (state or {}).get("hosts", []):
        # The recorded start time guards against signalling a stranger that reused the pid.
        if procs.is_alive(host.get("pid"), host.get("ticks")):
            procs.signal_group(int(host["pid"]), signal.SIGKILL)
    reason = VANISHED
    if state is None:
        log = job_dir / "supervisor.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-10:] if log.exists() else []
        reason = "the supervisor exited before starting the job" + (
            ":\n" + "\n".join(tail) if tail else ""
        )
    started = (state or {}).get("started_at")
    publish_json(
        job_dir / "status.json",
        {"state": JobState.FAILED.value, "secondary_status": "Failed", "failure_reason": reason,
         "started_at": started, "ended_at": to_iso(now())},
    )  # fmt: skip
    return _final(name, read_json(job_dir / "status.json") or {"state": "failed"})
