"""A private view of the filesystem for one sandboxed process, built between fork and exec.

The child (still root) enters a mount namespace of its own, covers every directory it must
not see with an empty tmpfs (the data dir, the work dir, and each directory the sandbox uid
could not traverse, like ``/root`` holding the interpreter), then binds back, at the same
paths, exactly what the process needs: the interpreter and virtualenv read-only, its own
directories writable. Nothing of this leaks out: ``/`` is made private first.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import PurePosixPath

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
TMPFS_OPTIONS = b"mode=0755,size=1m"  # holds only the mount points of what is bound back

_libc = ctypes.CDLL(None, use_errno=True)  # loaded here, never between fork and exec


@dataclass(frozen=True)
class Mount:
    """One step of the view: cover ``path`` (tmpfs, or /dev/null for a file), or bind it back."""

    path: str
    kind: str  # "cover" | "bind"
    writable: bool = False


def _depth(path: str) -> int:
    return len(PurePosixPath(path).parts)


def _inside(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(root)


def traversable(path: str, uid: int, gid: int) -> bool:
    info = os.stat(path)
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def plan(hide: list[str], expose: list[tuple[str, bool]], uid: int, gid: int) -> tuple[Mount, ...]:
    """The mounts, outermost first, that hide ``hide`` and make ``expose`` reachable by ``uid``."""
    covers = {os.path.realpath(p) for p in hide if os.path.lexists(p)} - {"/"}
    binds: dict[str, bool] = {}
    for path, writable in expose:
        real = os.path.realpath(path)
        if not os.path.exists(real) or real in covers:  # a hidden path is never shown again
            continue
        binds[real] = binds.get(real, False) or writable
        for parent in PurePosixPath(real).parents:
            if str(parent) != "/" and not traversable(str(parent), uid, gid):
                covers.add(str(parent))
    steps = [Mount(p, "cover") for p in covers] + [Mount(p, "bind", w) for p, w in binds.items()]
    steps.sort(key=lambda m: (_depth(m.path), m.kind != "cover", m.path))
    kept: list[Mount] = []
    for step in steps:
        enclosing = [m for m in kept if m.path != step.path and _inside(step.path, m.path)]
        nearest = max(enclosing, key=lambda m: _depth(m.path), default=None)
        # Under a cover with nothing bound back in between, a cover adds nothing; nor does a
        # bind under a bind of the same kind.
        if nearest is not None and nearest.kind == step.kind and nearest.writable == step.writable:
            continue
        kept.append(step)
    return tuple(kept)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None
) -> None:
    result = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data,
    )
    _check(result, f"mount {target}")


def isolate_network() -> None:
    """Leave the host's network for one of one's own, with its loopback up (and nothing else):
    what this process starts afterwards reaches no service of the host, only each other."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def unshare_mounts() -> None:
    """Enter a mount namespace of one's own whose changes never propagate back."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)


def apply(steps: tuple[Mount, ...]) -> None:
    """In the child, as root, after ``unshare_mounts``: build the view ``plan`` described."""
    os.umask(0o022)  # mount points must be traversable by the uid about to be taken
    # Opened before anything is covered: once a tmpfs lies over a parent, the path is gone.
    sources = {m.path: os.open(m.path, os.O_PATH | os.O_CLOEXEC) for m in steps if m.kind == "bind"}
    try:
        for step in steps:
            is_dir = step.kind == "cover" or stat.S_ISDIR(os.fstat(sources[step.path]).st_mode)
            if not os.path.lexists(step.path):  # inside a tmpfs laid down a step earlier
                if is_dir:
                    os.makedirs(step.path, mode=0o755)
                else:
                    os.makedirs(os.path.dirname(step.path), mode=0o755, exist_ok=True)
                    os.close(os.open(step.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o444))
            if step.kind == "cover" and os.path.isdir(step.path):
                _mount("tmpfs", step.path, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)
            elif step.kind == "cover":
                _mount("/dev/null", step.path, None, MS_BIND, None)
            else:
                fd = sources[step.path]
                _mount(f"/proc/self/fd/{fd}", step.path, None, MS_BIND | MS_REC, None)
                flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
                _mount(None, step.path, None, flags | (0 if step.writable else MS_RDONLY), None)
    finally:
        for fd in sources.values():
            os.close(fd)


def namespaces_work() -> bool:
    """Whether this process may build such a view (root with CAP_SYS_ADMIN, not seccomp'd)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports through its exit code
        try:
            unshare_mounts()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
