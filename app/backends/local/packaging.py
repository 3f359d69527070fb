"""Model artifacts: ``model.tar.gz`` from the hosts' model directories, and back into one."""

from __future__ import annotations

import os
import shutil
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


def package_model(
    job_dir: Path, config: JobConfig, hosts: Sequence[str], *, empty_ok: bool
) -> str | None:
    """Pack the hosts' ``SM_MODEL_DIR``s into ``model.tar.gz``; its URI (None: nothing to pack)."""
    # Each host has its own model directory, as on SageMaker. Scripts conventionally save on
    # the leader only; if several hosts wrote, algo-1's files win and the others add the rest.
    entries: dict[str, Path] = {}
    for host in reversed(hosts):
        root = job_dir / "hosts" / host / "model"
        for current, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = Path(current) / name
                entries[str(path.relative_to(root))] = path
    if not entries and not empty_ok:
        return None
    target = job_dir / ARTIFACT
    tmp = job_dir / f".{ARTIFACT}.tmp"
    # Level 6: most of level 9's ratio at a fraction of its time on large models.
    with tarfile.open(tmp, "w:gz", compresslevel=6) as archive:
        for relative in sorted(entries):
            path = entries[relative]
            archive.add(path, arcname=relative, recursive=False)
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
