"""One leased sandbox uid and the processes confined under it, as a supervisor or a
controller (both root) use it: open, prepare directories, start confined children, close."""

from __future__ import annotations

import functools
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from app.backends.local import mounts, sandbox
from app.backends.local.contract import (
    CODE_DIR,
    MODEL_INPUT_DIR,
    JobConfig,
    host_command,
    host_names,
    layout_host,
)
from app.backends.local.sandbox import Lease, SandboxError, SandboxSpec

PROBE_TIMEOUT_S = 30.0


@functools.cache
def namespaces_work() -> bool:
    """Whether mount namespaces can be built here (checked once per process)."""
    return mounts.namespaces_work()


class Jail:
    """A uid of one job's or one endpoint's own, held until ``close``."""

    def __init__(self, spec: SandboxSpec, lease: Lease) -> None:
        self.spec = spec
        self.lease = lease
        self.notes: list[str] = []

    @classmethod
    def open(cls, spec: SandboxSpec, prefer: int | None = None, avoid: Iterable[int] = ()) -> Jail:
        """Lease a uid; fall back to uid and file modes where namespaces cannot be built."""
        notes = []
        if spec.namespaces and not namespaces_work():
            spec = spec.model_copy(update={"namespaces": False})
            notes.append(
                "mount namespaces are unavailable here (no CAP_SYS_ADMIN?): confined by uid"
                " and file modes only"
            )
        sandbox.lock_down(spec)
        jail = cls(spec, sandbox.lease_uid(spec, prefer, avoid))
        jail.notes = notes
        return jail

    @property
    def uid(self) -> int:
        return self.lease.uid

    @property
    def gid(self) -> int:
        return self.lease.gid

    def give(self, path: Path, mode: int = 0o700) -> None:
        """Hand ``path`` (and what it holds) to the sandbox uid."""
        sandbox.chown_tree(path, self.uid, self.gid)
        os.chmod(path, mode, follow_symlinks=False)

    def env(self, base: dict[str, str], private: Path) -> dict[str, str]:
        """``base`` with ``HOME`` and ``TMPDIR`` of the process's own under ``private``."""
        return {**base, **sandbox.private_dirs(private, self.uid, self.gid)}

    def preexec(
        self, expose: list[tuple[str, bool]], cwd: Path, *, die_with_parent: bool = True
    ) -> Callable[[], None]:
        """The ``preexec_fn`` confining a child that sees the interpreter and ``expose``."""
        paths = [*sandbox.interpreter_paths(), *expose]
        return sandbox.confine(self.spec, self.lease, paths, cwd, die_with_parent=die_with_parent)

    def give_readable(self, path: Path) -> None:
        """Let the sandbox gid read ``path`` (and what it holds), and nobody else."""
        sandbox.chown_tree(path, 0, self.gid)
        for current, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
            os.chmod(current, 0o750, follow_symlinks=False)  # noqa: S103 - traversable, not listable
            for name in files:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    mode = 0o750 if info.st_mode & stat.S_IXUSR else 0o640
                    os.chmod(name, mode, dir_fd=dir_fd)
            del dirs

    def check_interpreter(self, cwd: Path) -> str | None:
        """Why the sandbox uid cannot run this Python (None: it can)."""
        argv = [sys.executable, "-c", "import encodings, json"]
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
                argv,
                cwd=cwd,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                preexec_fn=self.preexec([], cwd),
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = str(exc)
        else:
            if done.returncode == 0:
                return None
            last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            detail = f"exit code {done.returncode}: {last[0]}"
        where = "with a mount namespace" if self.spec.namespaces else "by file modes alone"
        return (
            f"the sandbox uid {self.uid} cannot run the interpreter {sys.executable} ({detail});"
            f" confined {where}, it needs Python installed where that uid can read it"
            " (e.g. /usr/local), or Stratus run with CAP_SYS_ADMIN"
        )

    def check_reachable(self, path: Path) -> str | None:
        """Why the sandbox uid cannot reach ``path`` by file modes alone (None: it can)."""
        for parent in reversed(Path(os.path.realpath(path)).parents):
            if not mounts.traversable(str(parent), self.uid, self.gid):
                return (
                    f"the sandbox uid {self.uid} cannot reach {path}: {parent} is closed to"
                    " other users; without a mount namespace the work dir must lie under"
                    " directories everyone may traverse"
                )
        return None

    def close(self, give_back: Iterable[Path] = ()) -> None:
        """Kill what still runs as the uid, give its files back to root, release the uid."""
        sandbox.kill_uid(self.lease)
        for path in give_back:
            sandbox.chown_tree(path, 0, 0)
        self.lease.release()


def open_jail(
    spec: SandboxSpec | None, prefer: int | None = None, avoid: Iterable[int] = ()
) -> tuple[Jail | None, str | None]:
    """A jail for ``spec`` (None without a sandbox), or why none could be opened."""
    if spec is None and sandbox.is_root():
        # Written by a Stratus that was not root, or predates the sandbox: never run unconfined.
        return None, "it was created without a sandbox, and as root Stratus runs no unconfined code"
    if spec is None:
        return None, None
    try:
        return Jail.open(spec, prefer, avoid), None
    except (SandboxError, OSError) as exc:
        return None, f"the sandbox could not be prepared: {exc}"


def open_job_jail(job_dir: Path, config: JobConfig) -> tuple[Jail | None, str | None]:
    """The jail of a training job, its hosts laid out and given to it; or why it cannot run."""
    jail, problem = open_jail(config.sandbox)
    if jail is None:
        return None, problem
    hosts = host_names(config.instance_count)
    for name in hosts:
        layout_host(job_dir, config, name)
    os.chmod(job_dir, 0o711)  # noqa: S103 - traversable, not listable
    os.chmod(job_dir / "hosts", 0o711)  # noqa: S103 - traversable, not listable
    for path in job_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)  # job.json holds the run's environment
    jail.give(job_dir / CODE_DIR)
    if (job_dir / MODEL_INPUT_DIR).is_dir():
        jail.give_readable(job_dir / MODEL_INPUT_DIR)
    for name in hosts:
        jail.give(job_dir / "hosts" / name)
    if not jail.spec.namespaces:
        problem = jail.check_reachable(job_dir / CODE_DIR)
        if problem is None and host_command(job_dir, config)[0] == sys.executable:
            problem = jail.check_interpreter(job_dir / CODE_DIR)
    return jail, problem
