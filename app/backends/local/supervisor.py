"""The supervisor of one local training job: ``python -m app.backends.local.supervisor JOB_DIR``.

Started detached by ``submit_training``, it outlives the worker that started it. It runs one
process per host (each in its own session, killed if the supervisor dies), tees their output
into the job's log while scraping metrics, enforces the runtime limit, honours stop requests,
packages the model and writes the final ``status.json``. It holds ``supervisor.lock`` for its
whole life: a poller that can take that lock knows the supervisor is gone.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.backends.base import JobState
from app.backends.local import mounts, procs
from app.backends.local.contract import (
    CODE_DIR,
    JobConfig,
    host_command,
    host_env,
    host_names,
    layout_host,
)
from app.backends.local.files import acquire_lock, now, publish_json, to_iso, write_json
from app.backends.local.jail import Jail, open_job_jail
from app.backends.local.logsink import LogSink
from app.backends.local.packaging import package_model

TICK_S = 0.1
HEARTBEAT_S = 5.0
DRAIN_S = 2.0  # how long to keep reading output after the hosts have exited
SCRAPE_DRAIN_S = 5.0  # how long the metric scraper may take to catch up at the end


@dataclass
class Host:
    name: str
    proc: subprocess.Popen[bytes]
    code: int | None = None


@dataclass(frozen=True)
class Ending:
    state: JobState
    secondary: str
    reason: str | None = None


class Supervisor:
    """Runs the hosts of one job to an end and records how it ended."""

    def __init__(self, job_dir: Path, config: JobConfig) -> None:
        self.job_dir = job_dir
        self.config = config
        self.hosts: list[Host] = []
        self.ending: Ending | None = None
        self.kill_at: float | None = None
        self.terminated = False
        self.started_at = now()
        self.sink = LogSink(
            job_dir,
            config.metric_definitions,
            prefixed=config.instance_count > 1,
            regex_timeout_s=config.metric_regex_timeout_s,
        )
        self.jail: Jail | None = None
        self._selector = selectors.DefaultSelector()
        self._beat = 0.0

    def run(self) -> None:
        """Run the job; always ends with ``status.json`` written."""
        self._state("Starting")
        if (self.job_dir / "stop").exists():
            self.ending = Ending(JobState.STOPPED, "Stopped", None)
        elif self._open_jail():
            self._start_hosts()
        self.started_at = now()
        started = time.monotonic()
        self._state("Training")
        while any(h.code is None for h in self.hosts):
            self._pump(TICK_S)
            self._reap()
            self._check(time.monotonic() - started)
            if time.monotonic() - self._beat >= HEARTBEAT_S:
                self._state("Stopping" if self.ending else "Training")
        self._clean_up()
        self._finish()

    def _open_jail(self) -> bool:
        """Lease the job's uid and hand it its directories; False (job failed) if impossible."""
        self.jail, problem = open_job_jail(self.job_dir, self.config)
        for note in self.jail.notes if self.jail else ():
            self.sink.note(note)
        if problem is None and self.jail is not None and self.jail.spec.network == "none":
            problem = self._isolate_network()
        if problem is None:
            return True
        self.sink.note(problem)
        self._end(Ending(JobState.FAILED, "Failed", problem))
        return False

    def _isolate_network(self) -> str | None:
        """Move this supervisor, and so the hosts it starts, off the host's network; the
        reason the job cannot run, or None."""
        try:
            mounts.isolate_network()
        except OSError as exc:
            return (
                f"the job's network could not be isolated ({exc}); an admin may run jobs on "
                "the host's network with STRATUS_BACKENDS__LOCAL__SANDBOX_NETWORK=host"
            )
        self.sink.note("network: a namespace of the job's own (loopback only)")
        return None

    def _start_hosts(self) -> None:
        command = host_command(self.job_dir, self.config)
        code = self.job_dir / CODE_DIR
        # What a sandboxed host sees besides the interpreter: its job's code, hosts and inputs.
        expose = [(str(code), True), (str(self.job_dir / "hosts"), True)]
        expose += [(path, False) for path in self.config.channels.values()]
        for name in host_names(self.config.instance_count):
            if self.jail is None:  # a jail laid the hosts out already, before giving them away
                layout_host(self.job_dir, self.config, name)
            env = procs.base_env(host_env(self.job_dir, self.config, name))
            preexec = procs.die_with_parent
            if self.jail is not None:
                env = self.jail.env(env, self.job_dir / "hosts" / name)
                preexec = self.jail.preexec(expose, code)
            try:
                # Started before any thread exists, so preexec_fn is safe here.
                proc = subprocess.Popen(  # noqa: S603 - the job's own entrypoint, no shell
                    command,
                    cwd=code,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            except OSError as exc:
                self.sink.note(f"could not start {name}: {exc}")
                self._end(Ending(JobState.FAILED, "Failed", f"could not start {name}: {exc}"))
                return
            assert proc.stdout is not None  # noqa: S101 - stdout=PIPE above
            self._selector.register(proc.stdout, selectors.EVENT_READ, name)
            self.hosts.append(Host(name, proc))
            self.sink.note(f"started {name} (pid {proc.pid}): {self.config.entrypoint}")
        self.sink.flush()

    def _pump(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            name = str(key.data)
            data = os.read(key.fd, 65536)
            scrape = name == "algo-1"  # one series per metric: the leader's
            if data:
                self.sink.feed(name, data, scrape=scrape)
            else:
                self._selector.unregister(key.fileobj)
                self.sink.finish(name, scrape=scrape)
        self.sink.flush()

    def _reap(self) -> None:
        by_pid = {h.proc.pid: h for h in self.hosts}
        for pid, code in procs.reap():  # orphans adopted as subreaper are reaped here too
            host = by_pid.get(pid)
            if host is None:
                continue
            host.code = host.proc.returncode = code
            if code != 0 and self.ending is None:
                self._drain(host)  # its last words (a traceback) may still sit in the pipe
                reason = f"{host.name} {procs.describe_exit(code)}"
                self._end(Ending(JobState.FAILED, "Failed", reason), with_tail=True)
                self.sink.note(reason)

    def _drain(self, host: Host, timeout: float = 1.0) -> None:
        """Read a finished host's output to its end (bounded: a leftover child may hold it)."""
        deadline = time.monotonic() + timeout
        while host.proc.stdout in self._open_pipes() and time.monotonic() < deadline:
            self._pump(TICK_S / 2)

    def _open_pipes(self) -> list[object]:
        return [key.fileobj for key in self._selector.get_map().values()]

    def _check(self, elapsed: float) -> None:
        if self.ending is None and (self.job_dir / "stop").exists():
            self.sink.note("stop requested")
            self._end(Ending(JobState.STOPPED, "Stopped"))
        elif self.ending is None and self.terminated:
            self._end(Ending(JobState.FAILED, "Failed", "the supervisor was told to terminate"))
        elif self.ending is None and elapsed > self.config.max_runtime_seconds:
            limit = self.config.max_runtime_seconds
            reason = f"the job exceeded its maximum runtime of {limit} s and was stopped"
            self.sink.note(reason)
            self._end(Ending(JobState.FAILED, "MaxRuntimeExceeded", reason))
        elif self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_at = None
            for host in self.hosts:
                if host.code is None:
                    self.sink.note(f"{host.name} ignored SIGTERM; sending SIGKILL")
                    procs.signal_group(host.proc.pid, signal.SIGKILL)

    def _end(self, ending: Ending, *, with_tail: bool = False) -> None:
        """Record why the job ends and ask every host still running to exit (SIGTERM, grace)."""
        if with_tail and ending.reason:
            tail = "\n".join(self.sink.tail)
            ending = Ending(
                ending.state, ending.secondary, f"{ending.reason}; last log lines:\n{tail}"
            )
        self.ending = ending
        running = [h for h in self.hosts if h.code is None]
        for host in running:
            procs.signal_group(host.proc.pid, signal.SIGTERM)
        if running:
            self.kill_at = time.monotonic() + self.config.stop_grace_s
            self._state("Stopping")

    def _clean_up(self) -> None:
        """Leave nothing behind: what the hosts started, in their groups or adopted by us."""
        deadline = time.monotonic() + DRAIN_S
        while self._selector.get_map() and time.monotonic() < deadline:
            self._pump(TICK_S)
        for host in self.hosts:
            procs.signal_group(host.proc.pid, signal.SIGKILL)
        helpers = self.sink.helper_pids()
        for pid in procs.children_of(os.getpid()):
            if pid not in helpers:
                procs.signal_pid(pid, signal.SIGKILL)
        time.sleep(TICK_S)
        self._reap()
        while self._selector.get_map() and time.monotonic() < deadline + DRAIN_S:
            self._pump(TICK_S)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            self.sink.finish(str(key.data), scrape=key.data == "algo-1")
        for host in self.hosts:
            if host.proc.stdout is not None:
                host.proc.stdout.close()
        self.sink.finish_scraping(SCRAPE_DRAIN_S)
        self.close_jail()

    def close_jail(self) -> None:
        """Nothing runs as the job's uid any more; its files are root's before packaging."""
        if self.jail is not None:
            jail, self.jail = self.jail, None
            jail.close([self.job_dir / CODE_DIR, self.job_dir / "hosts"])

    def _finish(self) -> None:
        ending = self.ending or Ending(JobState.COMPLETED, "Completed")
        artifact: str | None = None
        if ending.state != JobState.FAILED:
            self._state("Uploading")
            try:
                hosts = [h.name for h in self.hosts]
                # A stopped job keeps what it saved; SageMaker uploads that too.
                empty_ok = ending.state == JobState.COMPLETED
                artifact = package_model(self.job_dir, self.config, hosts, empty_ok=empty_ok)
            except OSError as exc:
                ending = Ending(JobState.FAILED, "Failed", f"packaging the model failed: {exc}")
        ended = now()
        seconds = (ended - self.started_at).total_seconds()
        self.sink.note(f"job {ending.state} after {seconds:.1f} s")
        self.sink.close()
        publish_json(
            self.job_dir / "status.json",
            {
                "state": ending.state.value,
                "secondary_status": ending.secondary,
                "failure_reason": ending.reason if ending.state == JobState.FAILED else None,
                "started_at": to_iso(self.started_at),
                "ended_at": to_iso(ended),
                "artifact_uri": artifact,
                "final_metrics": self.sink.scraper.last,
                "billable_seconds": round(seconds * self.config.instance_count, 3),
            },
        )

    def _state(self, phase: str) -> None:
        self._beat = time.monotonic()
        write_json(
            self.job_dir / "state.json",
            {
                "pid": os.getpid(),
                "ticks": procs.start_ticks(os.getpid()),
                "phase": phase,
                "started_at": to_iso(self.started_at),
                "heartbeat_at": to_iso(now()),
                "hosts": [
                    {"name": h.name, "pid": h.proc.pid, "ticks": procs.start_ticks(h.proc.pid)}
                    for h in self.hosts
                ],
            },
        )


def main(argv: list[str]) -> int:
    """Supervise the job in ``argv[0]``; a second supervisor of the same job exits at once."""
    job_dir = Path(argv[0]).resolve()
    lock = acquire_lock(job_dir / "supervisor.lock", wait_s=5.0)
    if lock is None:
        return 0
    # state.json means some supervisor ran this job already; it must never run twice.
    if (job_dir / "status.json").exists() or (job_dir / "state.json").exists():
        return 0
    config = JobConfig.model_validate_json((job_dir / "job.json").read_text())
    if config.sandbox is not None:
        os.umask(0o077)  # what the supervisor writes is root's alone
    procs.become_subreaper()
    supervisor = Supervisor(job_dir, config)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        supervisor.terminated = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        supervisor.run()
    except BaseException as exc:
        for host in supervisor.hosts:
            procs.signal_group(host.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):  # the failure below must be recorded regardless
            supervisor.sink.close()
            supervisor.close_jail()
        reason = f"the supervisor failed: {type(exc).__name__}: {exc}"
        ended = to_iso(now())
        publish_json(
            job_dir / "status.json",
            {"state": "failed", "secondary_status": "Failed", "failure_reason": reason,
             "started_at": to_iso(supervisor.started_at), "ended_at": ended},
        )  # fmt: skip
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
