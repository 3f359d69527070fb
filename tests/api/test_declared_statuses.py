"""Every status an operation answers is declared in its OpenAPI ``responses``.

Each operation of the app (enumerated, so later routes are covered) is probed the ways any
route can fail before or around its own logic, and the status it answers must be declared:
no key, a key with no role, a NUL character in the query, ids that do not exist, a body that
is not JSON, that is malformed, or that is too large. Statuses that depend on a route's logic
(409, 429, 502, 503) are declared by hand with ``problem_responses`` and checked by the
route's own tests.
"""

from __future__ import annotations

import re
import uuid
from functools import cache
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.settings import Settings
from tests.factories import Key, make_key
from tests.routes import Operation, operations

MAX_BODY = 1024


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(Settings(env="test", key_pepper="x" * 20)).openapi()
    return spec


def _declared(op: Operation) -> set[int]:
    responses = _spec()["paths"][op.path][op.method.lower()]["responses"]
    return {int(code) for code in responses}


def _cases() -> list[Any]:
    app = create_app(Settings(env="test", key_pepper="x" * 20))
    return [pytest.param(op, id=f"{op.method} {op.path}") for op in operations(app)]


def _url(op: Operation, query: str = "") -> str:
    # Ids that do not exist; names that are fine.
    path = re.sub(r"{(\w+_id)}", lambda _m: str(uuid.uuid4()), op.path)
    return re.sub(r"{\w+}", "default", path) + query


@pytest.fixture
def small_body_client(
    settings: Settings, session_factory: sessionmaker[Session]
) -> tuple[FastAPI, TestClient]:
    limited = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_body_bytes": MAX_BODY})}
    )
    app = create_app(limited, session_factory)
    return app, TestClient(app)


@pytest.fixture
def keys(db: Session) -> tuple[Key, Key]:
    """An admin key and a key with no role anywhere."""
    admin, plain = make_key(db, admin=True), make_key(db)
    db.commit()
    return admin, plain


@pytest.mark.parametrize("op", _cases())
def test_every_answer_is_declared(
    small_body_client: tuple[FastAPI, TestClient], keys: tuple[Key, Key], op: Operation
) -> None:
    _app, client = small_body_client
    declared = _declared(op)
    item = _spec()["paths"][op.path][op.method.lower()]
    has_body = "requestBody" in item
    has_params = has_body or bool(item.get("parameters")) or "{" in op.path
    auth = keys[0].headers
    probes: dict[str, Any] = {
        "no key": client.request(op.method, _url(op)),
        "a key with no role": client.request(op.method, _url(op), headers=keys[1].headers),
        "NUL in the query": client.request(op.method, _url(op, "?q=%00"), headers=auth),
        "ids that do not exist": client.request(op.method, _url(op), headers=auth, json={}),
    }
    if has_body:
        probes["a body that is not JSON"] = client.request(
            op.method, _url(op), headers={**auth, "Content-Type": "text/plain"}, content=b"x"
        )
        probes["malformed JSON"] = client.request(
            op.method,
            _url(op),
            headers={**auth, "Content-Type": "application/json"},
            content=b'{"x": ',
        )
        probes["a body over the limit"] = client.request(
            op.method,
            _url(op),
            headers={**auth, "Content-Type": "application/json"},
            content=b'{"x": "' + b"y" * MAX_BODY + b'"}',
        )
    undeclared = {
        why: f"{r.status_code} {r.text[:200]}"
        for why, r in probes.items()
        if r.status_code not in declared
    }
    assert not undeclared, f"declared {sorted(declared)}; undeclared answers: {undeclared}"
    for r in probes.values():
        assert r.status_code < 500 or r.status_code in (502, 503), r.text
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", r.text
    if has_params:
        assert 422 in declared
    if has_body:
        assert {413, 415, 422} <= declared


def test_authenticated_operations_declare_401() -> None:
    open_paths = {"/healthz", "/readyz"}
    app = create_app(Settings(env="test", key_pepper="x" * 20))
    missing = [
        f"{op.method} {op.path}"
        for op in operations(app)
        if op.path not in open_paths and 401 not in _declared(op)
    ]
    assert not missing, missing
