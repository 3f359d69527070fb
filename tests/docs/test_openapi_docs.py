"""The docs page works: every operation and field explained, a bearer scheme for Authorize,
assets served from the package (no CDN), and malformed JSON answered in words."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.routes.docs import STATIC_DIR
from app.main import create_app
from app.settings import Settings
from tests.factories import make_key

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(Settings(env="test", key_pepper="x" * 20)).openapi()
    return openapi


def _properties(schema: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every property of a schema, nested object schemas included."""
    found = []
    for name, prop in (schema.get("properties") or {}).items():
        found.append((f"{where}.{name}", prop))
        found += _properties(prop, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _properties(schema[key], f"{where}[]")
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key) or []:
            found += _properties(option, where)
    return found


def test_every_operation_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if not op.get("summary", "").strip() or not op.get("description", "").strip()
    ]
    assert missing == [], "operations without a summary or description (add a docstring)"


def test_every_schema_field_has_a_description(spec: dict[str, Any]) -> None:
    missing = [
        where
        for name, schema in spec["components"]["schemas"].items()
        for where, prop in _properties(schema, name)
        if not str(prop.get("description", "")).strip()
    ]
    assert missing == [], "fields without Field(description=...)"


def test_authenticated_operations_use_the_bearer_scheme(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            needs_key = "401" in op["responses"]
            if path == "/metrics":  # a token only from off the loopback
                assert op["security"] == [{}, {"bearerAuth": []}]
                continue
            assert (op.get("security") == [{"bearerAuth": []}]) == needs_key, (
                f"{method.upper()} {path}"
            )
    assert "security" not in spec["paths"]["/healthz"]["get"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_pages_load_nothing_from_elsewhere(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html), html
    assets = re.findall(r"[\"'](/static/docs/[^\"']+)[\"']", html)
    assert assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200, asset
        assert len(r.content) > 0


def test_assets_ship_in_the_package() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["app.api"]
    shipped = [p for p in STATIC_DIR.rglob("*") if p.is_file() and p.suffix != ".md"]
    assert len(shipped) >= 5
    for path in shipped:
        relative = path.relative_to(STATIC_DIR.parent).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"name": "x",\n  "description": }', "line 2, column 18 (character 32)"),
        (b'{"name": "x"', "line 1, column 13 (character 13)"),
        (b"{'name': 'x'}", "line 1, column 2 (character 2)"),
    ],
)
def test_malformed_json_is_a_400_that_says_where(
    client: TestClient, db: Session, body: bytes, where: str
) -> None:
    key = make_key(db)
    db.commit()
    headers = {**key.headers, "Content-Type": "application/json"}
    r = client.post("/v1/projects", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "malformed_json"
    assert where in problem["detail"]
