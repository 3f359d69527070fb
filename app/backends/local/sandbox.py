"""Running user code as an unprivileged uid, each job or endpoint under a uid of its own.

When Stratus runs as root, a training host or a model replica starts as root only long enough
to build its own view of the filesystem (``mounts``), set its resource limits, drop every
group, take its uid and gid and forbid itself new privileges; then it executes the user's
code. Each job and each endpoint leases its own uid from a range, so two of them never share
one: same-uid processes could read each other's ``/proc/<pid>/environ`` and files, and
``RLIMIT_NPROC`` counts per uid. Without root nothing can be switched: the code runs as
Stratus's own user, which is for trusted code only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from app.backends.local import mounts

if TYPE_CHECKING:
    from app.settings import Settings

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SANDBOX_FAILED = 126  # the exit code of a child whose sandbox could not be built
LEASES_DIR = "uids"
SANDBOX_USER = "stratus-sandbox"
SECRET_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")
ADMIN_KEY_FILE = "admin-key"


class SandboxError(Exception):
    """The sandbox cannot be set up; the job or replica must not run."""


class SandboxSpec(BaseModel):
    """How user code is confined; decided by the process that holds the settings."""

    uid: int
    gid: int
    uid_count: int
    namespaces: bool
    hide: list[str]  # never visible to user code (the data dir, the work dir, database files)
    leases: str  # the directory of uid leases
    cpu_seconds: int = 0
    memory_bytes: int = 0
    open_files: int = 0
    processes: int = 0
    # Training jobs only: "none" gives the job a network of its own (loopback alone). Replicas
    # stay on the host's network, where the router reaches them. A job written before this
    # setting existed keeps the host's.
    network: Literal["none", "host"] = "host"


def is_root() -> bool:
    """Whether this process can switch uids (the sandbox needs it)."""
    return sys.platform == "linux" and os.geteuid() == 0


def mode_description(settings: Settings) -> str:
    """One sentence on how local user code runs under these settings, for ``stratus dev``."""
    local = settings.backends.local
    if not local.enabled:
        return "the local backend is disabled"
    if not is_root():
        return (
            "local jobs and replicas run as this user, unsandboxed: trusted code only"
            " (run as root to sandbox them)"
        )
    last = local.sandbox_uid + local.sandbox_uid_count - 1
    how = "a private mount namespace" if local.sandbox_namespaces else "file modes"
    return f"local jobs and replicas are sandboxed: uids {local.sandbox_uid}-{last}, {how}"


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - keeps the supervisor's start light

    try:
        parsed = make_url(url.removeprefix("sqla+"))
    except Exception:  # noqa: BLE001 - an unparsable URL is not a file of ours
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).resolve()


def secret_paths(settings: Settings, work_dir: Path) -> list[str]:
    """What user code must never see: the data dir, the work dir, the SQLite database files."""
    data_dir = settings.data_dir.resolve()
    paths = [data_dir, work_dir.resolve(), data_dir / ADMIN_KEY_FILE, data_dir / "logs"]
    for url in (settings.effective_database_url, settings.effective_broker_url):
        db = _sqlite_file(url)
        if db is not None:
            paths += [db.with_name(db.name + suffix) for suffix in SECRET_FILE_SUFFIXES]
    return [str(p) for p in dict.fromkeys(paths)]


def spec_for(settings: Settings, work_dir: Path) -> SandboxSpec | None:
    """The sandbox of this host's local backend; None when not root (no sandbox possible)."""
    if not is_root():
        return None
    local = settings.backends.local
    return SandboxSpec(
        uid=local.sandbox_uid,
        gid=local.sandbox_gid,
        uid_count=local.sandbox_uid_count,
        namespaces=local.sandbox_namespaces,
        hide=secret_paths(settings, work_dir),
        leases=str(work_dir.resolve() / LEASES_DIR),
        cpu_seconds=local.sandbox_cpu_seconds,
        memory_bytes=local.sandbox_memory_bytes,
        open_files=local.sandbox_open_files,
        processes=local.sandbox_processes,
        network=local.sandbox_network,
    )


def check_input(spec: SandboxSpec, path: Path) -> None:
    """Refuse an input path that would show user code the work dir or a secret file."""
    real = Path(os.path.realpath(path))
    work_dir = Path(spec.leases).parent
    for hidden in map(Path, spec.hide):
        if hidden.is_relative_to(real) or (real.is_relative_to(hidden) and not hidden.is_dir()):
            raise SandboxError(f"{path} holds Stratus's own files ({hidden})")
    if real.is_relative_to(work_dir):
        raise SandboxError(f"{path} is inside the local backend's work directory")


# --- uid leases -----------------------------------------------------------------------------


def uids_in_use() -> set[int]:
    """The real uids of every live process on this host."""
    found: set[int] = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    found.add(int(line.split()[1]))
                    break
    return found


class Lease:
    """A uid (and the gid at the same offset) held by this process until ``release``."""

    def __init__(self, spec: SandboxSpec, uid: int, fd: int) -> None:
        self.uid = uid
        self.gid = spec.gid + (uid - spec.uid)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let another job or endpoint take the uid."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lease_uid(spec: SandboxSpec, prefer: int | None = None, avoid: Iterable[int] = ()) -> Lease:
    """Take a uid no live process and no other holder uses; ``prefer`` (an adopted one) first."""
    Path(spec.leases).mkdir(mode=0o700, parents=True, exist_ok=True)
    busy = uids_in_use() | set(avoid)
    pool = range(spec.uid, spec.uid + spec.uid_count)
    # A random starting point spreads reuse: a just-released uid is rarely the next one taken.
    start = int.from_bytes(os.urandom(4), "big") % spec.uid_count
    order = [pool[(start + i) % len(pool)] for i in range(len(pool))]
    first = [prefer] if prefer is not None and prefer in pool else []
    candidates = first + [u for u in order if u not in busy]
    for uid in candidates:
        fd = os.open(
            Path(spec.leases) / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return Lease(spec, uid, fd)
    raise SandboxError(f"all {spec.uid_count} sandbox uids from {spec.uid} are in use")


def kill_uid(lease: Lease) -> None:
    """SIGKILL every process of the leased uid (what escaped its process group, too)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only signals and exits
        try:
            os.setgroups([])
            os.setresgid(lease.gid, lease.gid, lease.gid)
            os.setresuid(lease.uid, lease.uid, lease.uid)
            os.kill(-1, signal.SIGKILL)  # as that uid: every process it may signal is its own
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# --- files ----------------------------------------------------------------------------------


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything under it to ``uid:gid``, never following a symlink."""
    if not root.exists() or root.is_symlink():
        return
    os.chown(root, uid, gid, follow_symlinks=False)
    for _path, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def private_dirs(base: Path, uid: int, gid: int) -> dict[str, str]:
    """``HOME`` and ``TMPDIR`` of one process, created under ``base`` and owned by it."""
    env = {}
    for name, sub in (("HOME", "home"), ("TMPDIR", "tmp")):
        path = base / sub
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(path, uid, gid, follow_symlinks=False)
        env[name] = str(path)
    env["USER"] = env["LOGNAME"] = SANDBOX_USER
    return env


def interpreter_paths() -> list[tuple[str, bool]]:
    """What running ``sys.executable`` needs, read-only: its virtualenv and base prefix."""
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return [(os.path.realpath(p), False) for p in sorted(paths)]


# --- the child side -------------------------------------------------------------------------


def _limit(which: int, value: int) -> None:
    if value > 0:
        resource.setrlimit(which, (value, value))


def confine(
    spec: SandboxSpec,
    lease: Lease,
    expose: list[tuple[str, bool]],
    cwd: Path,
    *,
    die_with_parent: bool = True,
) -> Callable[[], None]:
    """The ``preexec_fn`` that confines a child; call only where no other thread runs."""
    steps = mounts.plan(spec.hide, expose, lease.uid, lease.gid) if spec.namespaces else ()
    libc = mounts._libc  # noqa: SLF001 - one libc handle, loaded before any fork
    parent = os.getpid()

    def preexec() -> None:
        try:
            _enter()
        except BaseException as exc:  # noqa: BLE001 - reported in the log; never run unconfined
            os.write(2, f"[stratus] the sandbox could not be set up: {exc}\n".encode())
            os._exit(SANDBOX_FAILED)

    def _enter() -> None:
        if spec.namespaces:
            mounts.unshare_mounts()
            mounts.apply(steps)
            os.chdir(cwd)  # the old cwd is a directory of the hidden tree underneath
        _limit(resource.RLIMIT_CPU, spec.cpu_seconds)
        _limit(resource.RLIMIT_AS, spec.memory_bytes)
        _limit(resource.RLIMIT_NOFILE, spec.open_files)
        _limit(resource.RLIMIT_NPROC, spec.processes)
        os.setgroups([])
        os.setresgid(lease.gid, lease.gid, lease.gid)
        os.setresuid(lease.uid, lease.uid, lease.uid)
        os.umask(0o077)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if die_with_parent:
            # Set after the uid change, which clears it: die when the one who started us dies.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)

    return preexec


def lock_down(spec: SandboxSpec) -> None:
    """File modes that keep secrets from other uids even without a mount namespace."""
    work_dir = Path(spec.leases).parent
    for path in map(Path, spec.hide):
        with contextlib.suppress(OSError):
            if path.is_symlink():
                continue
            if path.is_file() or (path.is_dir() and not work_dir.is_relative_to(path)):
                os.chmod(path, 0o600 if path.is_file() else 0o700)
            elif path.is_dir():  # the data dir, the work dir: traversable, not listable
                os.chmod(path, 0o711)  # noqa: S103 - traversable, not listable
    for sub in ("jobs", "endpoints"):
        with contextlib.suppress(OSError):
            os.chmod(work_dir / sub, 0o711)  # noqa: S103 - traversable, not listable
