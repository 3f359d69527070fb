"""JSON logs: one object a line, with the request's id and the calling key's id, and no
secrets even when a message holds one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.api.deps import PrincipalDep
from app.main import create_app
from app.observability.logs import JsonFormatter, redact
from app.settings import Settings
from tests.factories import make_key


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("stratus.probe")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_a_request_logs_json_lines_with_its_ids(
    settings: Settings,
    session_factory: sessionmaker[Session],
    db: Session,
    captured: io.StringIO,
) -> None:
    key = make_key(db)
    db.commit()
    # The formatter STRATUS_OBSERVABILITY__JSON_LOGS puts on the handlers, on a handler of the
    # test's own (configuring the root logger would reformat every later test's logs).
    app = create_app(settings, session_factory)

    def probe(principal: PrincipalDep) -> dict[str, str]:
        logging.getLogger("stratus.probe").info(
            "called with Authorization: Bearer %s and whsec_c2VjcmV0c2VjcmV0 on "
            "postgresql://stratus:hunter2@db/stratus",
            key.secret,
        )
        return {"id": str(principal.id)}

    app.add_api_route("/probe", probe)
    with TestClient(app) as client:
        r = client.get("/probe", headers={**key.headers, "X-Request-ID": "req-42"})
        other = client.get("/probe", headers={**key.headers, "X-Request-ID": "bad id\n"})
    assert r.headers["x-request-id"] == "req-42"
    assert other.headers["x-request-id"] != "bad id\n"  # not a plain token: a new one
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["request_id"] == "req-42"
    assert first["principal_id"] == str(key.id)
    assert first["level"] == "info"
    assert first["logger"] == "stratus.probe"
    assert second["request_id"] == other.headers["x-request-id"]
    for secret in (key.secret, "whsec_c2VjcmV0c2VjcmV0", "hunter2"):
        assert secret not in captured.getvalue()
    assert "[redacted]" in first["message"]


def test_redaction_keeps_the_rest() -> None:
    assert redact("key sk_abcdefghijklmnop refused") == "key [redacted] refused"
    assert redact("no secrets here") == "no secrets here"
