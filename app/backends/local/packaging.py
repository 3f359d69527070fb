"""Model artifacts: ``model.tar.gz`` from the hosts' model directories, and back into one."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

from app.backends.local.contract import JobConfig
from app.hostpaths import HostRoots

ARTIFACT = "model.tar.gz"


def local_path(uri: str, roots: HostRoots) -> Path:
    """The resolved local path of a ``file://`` URI or an absolute path under a host root.

    The API checked this when the run or model version was created; checking again here keeps
    a row written before the roots existed (or changed) from reaching other paths.
    """
    return roots.check(uri)


def _open_model_root(job_dir: Path, host: str) -> int | None:
    """The host's model directory, opened without following a symlink (None: there is none)."""
    root = job_dir / "hosts" / host / "model"
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink or a file where the directory should be
        raise OSError(f"{host}'s model directory is not a directory ({exc.strerror})") from exc


def _walk(root_fd: int) -> dict[str, os.stat_result]:
    """Every entry under ``root_fd`` with its lstat, by relative path; never leaves the tree."""
    found: dict[str, os.stat_result] = {}
    for current, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                found[os.path.normpath(os.path.join(current, name))] = info
    return found


def _open_beneath_dir(root_fd: int, relative: str) -> int:
    """Open a directory under ``root_fd``, refusing a symlink at every step."""
    fd = os.dup(root_fd)
    for part in (p for p in relative.split("/") if p):
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            next_fd = os.open(part, flags, dir_fd=fd)
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def _open_beneath(root_fd: int, relative: str) -> int:
    """Open a regular file under ``root_fd``, refusing a symlink at every step."""
    parent, name = os.path.split(relative)
    dir_fd = _open_beneath_dir(root_fd, parent)
    try:
        return os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    finally:
        os.close(dir_fd)


def _add(archive: tarfile.TarFile, root_fd: int, relative: str, info: os.stat_result) -> None:
    entry = tarfile.TarInfo(relative)
    entry.mode = stat.S_IMODE(info.st_mode) & 0o777  # no setuid/setgid bits
    entry.mtime = int(info.st_mtime)
    if stat.S_ISDIR(info.st_mode):
        entry.type = tarfile.DIRTYPE
        archive.addfile(entry)
    elif stat.S_ISLNK(info.st_mode):
        entry.type = tarfile.SYMTYPE
        parent, name = os.path.split(relative)
        dir_fd = _open_beneath_dir(root_fd, parent)
        try:
            entry.linkname = os.readlink(name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        archive.addfile(entry)
    elif stat.S_ISREG(info.st_mode):
        fd = _open_beneath(root_fd, relative)
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if not stat.S_ISREG(opened.st_mode):
                return
            entry.size = opened.st_size
            archive.addfile(entry, handle)
    # FIFOs, sockets and devices are no model's files: a FIFO would even block the reader.


def package_model(
    job_dir: Path, config: JobConfig, hosts: Sequence[str], *, empty_ok: bool
) -> str | None:
    """Pack the hosts' ``SM_MODEL_DIR``s into ``model.tar.gz``; its URI (None: nothing to pack)."""
    # Each host has its own model directory, as on SageMaker. Scripts conventionally save on
    # the leader only; if several hosts wrote, algo-1's files win and the others add the rest.
    # The directories were written by user code: nothing here follows a symlink out of them.
    roots: dict[str, int] = {}
    try:
        entries: dict[str, tuple[str, os.stat_result]] = {}
        for host in reversed(hosts):
            fd = _open_model_root(job_dir, host)
            if fd is None:
                continue
            roots[host] = fd
            entries.update({rel: (host, info) for rel, info in _walk(fd).items()})
        if not entries and not empty_ok:
            return None
        target = job_dir / ARTIFACT
        tmp = job_dir / f".{ARTIFACT}.tmp"
        # Level 6: most of level 9's ratio at a fraction of its time on large models.
        with tarfile.open(tmp, "w:gz", compresslevel=6) as archive:
            for relative in sorted(entries):
                host, info = entries[relative]
                _add(archive, roots[host], relative, info)
    finally:
        for fd in roots.values():
            os.close(fd)
    os.replace(tmp, target)
    if config.output_location:
        # SageMaker's layout under the output location: <job>/output/model.tar.gz.
        # Resolved and checked against the host roots when the job was submitted.
        destination = Path(config.output_location) / config.job_name / "output"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, destination / ARTIFACT)
        target = destination / ARTIFACT
    return target.resolve().as_uri()


def unpack_model(artifact_uri: str, destination: Path, roots: HostRoots) -> None:
    """Put the model of ``artifact_uri`` (a ``.tar.gz`` or a directory) into ``destination``."""
    source = local_path(artifact_uri, roots)
    if source.is_dir():
        if destination.resolve().is_relative_to(source.resolve()):
            raise ValueError(f"the model directory {source} contains the endpoint's own files")
        shutil.copytree(source, destination, symlinks=False)
        return
    if not source.is_file():
        raise FileNotFoundError(f"no model artifact at {source}")
    destination.mkdir(parents=True)
    with tarfile.open(source, "r:*") as archive:
        # The "data" filter refuses absolute paths, links out of the tree and device files.
        archive.extractall(destination, filter="data")
