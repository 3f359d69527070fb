"""Packing a directory: what is left out, and the same files giving the same bytes."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from stratus.packing import pack_directory


def _tree(root: Path) -> None:
    files = {
        "train.py": "print('loss=1')\n",
        "pkg/model.py": "x = 1\n",
        "pkg/__pycache__/model.cpython-311.pyc": "junk",
        "pkg/model.pyc": "junk",
        ".git/HEAD": "ref",
        ".venv/lib/site.py": "",
        "env2/pyvenv.cfg": "home = /usr",
        "env2/lib/x.py": "",
        "data/big.csv": "1,2\n",
        "data/keep.csv": "3,4\n",
        "notes/a.md": "a",
        "logs/run.log": "log",
        ".stratusignore": "# data stays home\ndata/*\n!data/keep.csv\nlogs/\n*.md\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "train.py").chmod(0o755)
    os.symlink("pkg/model.py", root / "link.py")
    os.symlink("/etc/passwd", root / "outside")


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: m for m in archive.getmembers()}


def test_skips_vcs_virtualenvs_caches_and_ignored(tmp_path: Path) -> None:
    _tree(tmp_path)
    out = io.BytesIO()
    packed = pack_directory(tmp_path, out)
    members = _members(out.getvalue())
    assert sorted(members) == [
        ".stratusignore",
        "data/keep.csv",
        "link.py",
        "pkg/model.py",
        "train.py",
    ]
    assert packed.skipped_links == ["outside"]
    assert members["link.py"].issym()
    assert members["link.py"].linkname == "pkg/model.py"
    assert members["train.py"].mode == 0o755
    assert members["pkg/model.py"].mode == 0o644
    assert {m.mtime for m in members.values()} == {0}
    assert packed.size_bytes == len(out.getvalue())


def test_same_files_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        _tree(root)
    os.utime(second / "train.py", (1, 1))
    one, two = io.BytesIO(), io.BytesIO()
    assert pack_directory(first, one).sha256 == pack_directory(second, two).sha256
    assert one.getvalue() == two.getvalue()
    (second / "train.py").write_text("print('loss=2')\n")
    assert pack_directory(second, io.BytesIO()).sha256 != pack_directory(first, one).sha256
