"""Packing a directory as a bundle, and the archive checks on their own (no database)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from app.artifacts.archive import ArchiveRefused, BundleLimits, extract_archive, inspect_archive
from app.domain.bundles.packing import pack_directory, pack_directory_to
from tests.bundles.archives import TRAIN, entry, targz

ROOT = Path(__file__).resolve().parents[2]
LIMITS = BundleLimits(max_files=100, max_unpacked_bytes=1024 * 1024)
LIMITS_LARGE = BundleLimits(max_files=10_000, max_unpacked_bytes=1024**3)


def _tree(root: Path) -> Path:
    (root / "lib").mkdir(parents=True)
    (root / "train.py").write_bytes(TRAIN)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "lib" / "util.py").write_text("X = 1\n")
    for skipped in (".git", "__pycache__", ".venv"):
        (root / skipped).mkdir()
        (root / skipped / "junk").write_text("junk")
    (root / "lib" / "util.cpython-311.pyc").write_bytes(b"\0")
    return root


def test_packing_is_deterministic_and_skips_the_usual_clutter(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    first = pack_directory(root)
    for path in root.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert pack_directory(root) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert sorted(members) == ["lib/util.py", "run.sh", "train.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, 0, "")}
    assert members["run.sh"].mode == 0o755
    assert members["train.py"].mode == 0o644
    files = inspect_archive(io.BytesIO(first), LIMITS).files
    assert sorted(files) == ["lib/util.py", "run.sh", "train.py"]


def test_links_inside_are_kept_and_links_out_are_left_out(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "main.py").symlink_to("train.py")
    packed = pack_directory(root)
    unpacked = tmp_path / "out"
    extract_archive(io.BytesIO(packed), unpacked, LIMITS)
    assert (unpacked / "main.py").is_symlink()
    assert (unpacked / "main.py").read_bytes() == TRAIN
    (root / "secret").symlink_to("/etc/passwd")
    (root / "up").symlink_to("../elsewhere")
    packed_with_links = pack_directory_to(root, io.BytesIO())
    assert packed_with_links.skipped_links == ["secret", "up"]
    assert "secret" not in packed_with_links.files
    assert "main.py" in packed_with_links.files


def test_the_shipped_recommender_packs_into_a_valid_bundle() -> None:
    packed = pack_directory(ROOT / "examples" / "recommender")
    files = inspect_archive(io.BytesIO(packed), LIMITS).files
    assert {"train.py", "data.py", "code/inference.py"} <= set(files)


def _pax_bomb(header_bytes: int) -> bytes:
    info = tarfile.TarInfo("train.py")
    info.size = len(TRAIN)
    info.pax_headers = {"comment": "x" * header_bytes}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(TRAIN))
    return buffer.getvalue()


def test_a_gzip_bomb_is_stopped_while_decompressing() -> None:
    # A few KB on the wire, megabytes once inflated: refused at the bound on inflated bytes.
    bomb = _pax_bomb(4_000_000)
    assert len(bomb) < 50_000
    small = BundleLimits(max_files=10, max_unpacked_bytes=100_000)
    with pytest.raises(ArchiveRefused, match="unpacks to more than"):
        inspect_archive(io.BytesIO(bomb), small)


def test_oversized_member_headers_are_refused_before_tarfile_holds_them() -> None:
    # Within the unpacked limit, but tarfile would keep the whole pax record in memory.
    with pytest.raises(ArchiveRefused, match="headers at the start are larger than"):
        inspect_archive(io.BytesIO(_pax_bomb(4_000_000)), LIMITS_LARGE)
    # Ordinary pax records (long names, say) pass.
    assert inspect_archive(io.BytesIO(_pax_bomb(10_000)), LIMITS_LARGE).files == ["train.py"]


def test_extraction_rechecks_and_stops_at_the_bad_member(tmp_path: Path) -> None:
    data = targz(entry("train.py", TRAIN), entry("../escape.py", b"x"))
    with pytest.raises(ArchiveRefused) as refused:
        extract_archive(io.BytesIO(data), tmp_path / "out", LIMITS)
    assert refused.value.member == "../escape.py"
    assert not (tmp_path / "escape.py").exists()
