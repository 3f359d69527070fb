"""Layering rules the code base keeps: routes reach backends only through services, and boto3
is imported only by the backends package."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_routes_never_import_backends() -> None:
    offenders = {
        str(path.relative_to(APP)): sorted(
            n for n in _imports(path) if n.startswith("app.backends")
        )
        for path in (APP / "api").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_backends_import_boto3() -> None:
    offenders = [
        str(path.relative_to(APP))
        for path in APP.rglob("*.py")
        if "backends" not in path.relative_to(APP).parts[:1]
        and any(n == "boto3" or n.startswith(("boto3.", "botocore")) for n in _imports(path))
    ]
    assert offenders == []
