"""Process plumbing: detached launches, pid checks that survive pid reuse, signals, reaping."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.backends.base import BackendError

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LINUX = sys.platform == "linux"
APP_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the ``app`` package

# What a training script or a model server inherits from the host environment: what programs
# need to run, and nothing of Stratus's own configuration (database URL, key pepper) nor
# ambient cloud credentials, which a script could print into a log that the API serves.
PASSED_ENV = {
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL",
    "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}  # fmt: skip

# The launcher is a throwaway process: it starts the real one in a new session and exits at
# once, so the real one is nobody's child here and the caller (a worker thread) never has to
# reap it. -I keeps the launcher free of the environment's Python settings.
_LAUNCHER = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,"
    " start_new_session=True)\n"
    "print(p.pid)\n"
)


def base_env(extra: Mapping[str, str] = {}) -> dict[str, str]:  # noqa: B006 - never mutated
    """The environment user code runs with: the allow-listed host variables, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
    env.update(extra)
    return env


def stratus_env() -> dict[str, str]:
    """The environment of Stratus's own helper processes (supervisor, controller, replicas)."""
    env = base_env({"PYTHONUNBUFFERED": "1"})
    # So ``-m app.backends.local...`` resolves even when Stratus runs from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(APP_ROOT), env.get("PYTHONPATH")) if p)
    return env


def spawn_detached(argv: Sequence[str], *, cwd: Path, log: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` in its own session, parented to init, output to ``log``; its pid."""
    launcher = [sys.executable, "-I", "-c", _LAUNCHER, str(log), *argv]
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            launcher, cwd=cwd, env=dict(env), capture_output=True, timeout=60, check=False
        )
        return int(done.stdout.decode().strip())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise BackendError(f"could not start {' '.join(argv[1:3])}: {exc}", retryable=True) from exc


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished; it only waits to be reaped
        return None
    return int(fields[19])


def is_alive(pid: int | None, ticks: int | None = None) -> bool:
    """Whether ``pid`` runs and, given ``ticks``, is still the process that started then."""
    if not pid or pid <= 0:
        return False
    if not LINUX:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    current = start_ticks(pid)
    return current is not None and (ticks is None or current == ticks)


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; one that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pid(pid: int, sig: int) -> None:
    """Send ``sig`` to one process; one that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def become_subreaper() -> None:
    """Adopt orphaned descendants, so whatever user code leaves behind is reaped here."""
    if LINUX:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> None:
    """In a child before exec: be killed when the process that started it dies, even by SIGKILL."""
    if LINUX:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def reap() -> list[tuple[int, int]]:
    """Collect every exited child without blocking: (pid, exit code; -N for signal N)."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, os.waitstatus_to_exitcode(status)))


def children_of(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (orphans a subreaper adopted, for instance)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir() if LINUX else ():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def describe_exit(code: int) -> str:
    """An exit code in words."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
