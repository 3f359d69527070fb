"""Model artifacts: ``model.tar.gz`` from the hosts' model directories, and back into one."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from app.backends.local.contract import JobConfig

ARTIFACT = "model.tar.gz"


def local_path(uri: str) -> Path:
    """The absolute local path of a ``file://`` URI or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise ValueError(f"the local backend reads local paths only, not {parsed.scheme}:// URIs")
    return Path(uri).expanduser().resolve()


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
        destination = local_path(config.output_location) / config.job_name / "output"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, destination / ARTIFACT)
        target = destination / ARTIFACT
    return target.resolve().as_uri()


def unpack_model(artifact_uri: str, destination: Path) -> None:
    """Put the model of ``artifact_uri`` (a ``.tar.gz`` or a directory) into ``destination``."""
    source = local_path(artifact_uri)
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
