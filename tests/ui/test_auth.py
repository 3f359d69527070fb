"""Signing in and out of the console: the cookie, the server-side session, CSRF, redirects."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.domain.access import Role
from app.domain.api_keys.models import ApiKey
from app.domain.ui_sessions.models import UiSession
from app.main import create_app
from app.settings import Settings
from tests.factories import make_key, make_project
from tests.ui.console import browser, csrf_of, sign_in


def _login_form(client: TestClient) -> str:
    return csrf_of(client.get("/ui/login").text)


def test_pages_redirect_to_sign_in_and_back(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    project = make_project(db, (key, Role.VIEWER), name="redirects")
    db.commit()
    with browser(settings, session_factory) as client:
        page = f"/ui/projects/{project.id}"
        first = client.get(page)
        assert first.status_code == 303
        assert first.headers["location"] == f"/ui/login?next=%2Fui%2Fprojects%2F{project.id}"
        token = _login_form(client)
        answer = client.post("/ui/login", data={"api_key": key.secret, "csrf": token, "next": page})
        assert answer.status_code == 303
        assert answer.headers["location"] == page
        shown = client.get(page)
        assert shown.status_code == 200
        assert "redirects" in shown.text


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [
        ("https://testserver", True),
        ("http://127.0.0.1:8000", False),  # `stratus dev`: plain http on loopback only
        ("http://stratus.example:8000", True),  # needs TLS: the cookie never comes back
    ],
)
def test_session_cookie_is_strict_and_httponly_and_secure_off_loopback(
    settings: Settings,
    session_factory: sessionmaker[Session],
    db: Session,
    base_url: str,
    secure: bool,
) -> None:
    key = make_key(db)
    db.commit()
    with browser(settings, session_factory, base_url=base_url) as client:
        form = client.get("/ui/login")
        answer = client.post("/ui/login", data={"api_key": key.secret, "csrf": csrf_of(form.text)})
    cookies = [form.headers["set-cookie"], *answer.headers.get_list("set-cookie")]
    signed_in = any(c.startswith("stratus_session=") for c in cookies)
    assert signed_in is (base_url != "http://stratus.example:8000")
    for cookie in cookies:
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags, cookie
        assert ("secure" in flags) is secure, cookie
    assert not any(key.secret in c for c in cookies)


def test_session_is_stored_as_a_hash_that_maps_to_the_key(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    db.commit()
    with browser(settings, session_factory) as client:
        sign_in(client, key)
        sign_in(client, key)  # signing in again ends the browser's previous session
        value = client.cookies.get("stratus_session") or ""
    assert len(value) >= 40
    rows = db.scalars(select(UiSession)).all()
    assert [r.api_key_id for r in rows] == [key.id]
    assert rows[0].token_hash == hashlib.sha256(value.encode()).hexdigest()
    assert rows[0].expires_at > utcnow() + timedelta(hours=settings.ui.session_hours - 1)


def test_bad_key_or_missing_login_token_signs_nobody_in(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    db.commit()
    with browser(settings, session_factory) as client:
        token = _login_form(client)
        wrong = client.post("/ui/login", data={"api_key": "sk_nope", "csrf": token})
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        forged = client.post("/ui/login", data={"api_key": key.secret, "csrf": "forged"})
        assert forged.status_code == 403
        assert "stratus_session" not in forged.headers.get("set-cookie", "")
    # A form posted from elsewhere has no login cookie at all.
    with browser(settings, session_factory) as client:
        cross = client.post("/ui/login", data={"api_key": key.secret, "csrf": token})
        assert cross.status_code == 403
    assert db.scalars(select(UiSession)).all() == []


def test_sign_in_never_redirects_off_the_console(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    db.commit()
    for target in ("https://elsewhere.example/", "//elsewhere.example/ui/", "/v1/projects"):
        with browser(settings, session_factory) as client:
            token = _login_form(client)
            answer = client.post(
                "/ui/login", data={"api_key": key.secret, "csrf": token, "next": target}
            )
            assert answer.headers["location"] == "/ui/"


def test_sign_out_ends_the_session_server_side(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    key = make_key(db)
    db.commit()
    with browser(settings, session_factory) as client:
        csrf = sign_in(client, key)
        stolen = client.cookies.get("stratus_session")
        assert client.post("/ui/logout", data={}).status_code == 403  # no CSRF token
        assert client.get("/ui/").status_code == 200
        assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
        assert client.get("/ui/").status_code == 303
    # The cookie kept by someone else no longer works either.
    with browser(settings, session_factory) as other:
        other.cookies.set("stratus_session", stolen or "", domain="testserver", path="/ui")
        assert other.get("/ui/").status_code == 303
    assert db.scalars(select(UiSession)).all() == []


def test_revoked_key_or_expired_session_is_signed_out(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    revoked, expired = make_key(db), make_key(db)
    db.commit()
    with browser(settings, session_factory) as client:
        sign_in(client, revoked)
        db.execute(update(ApiKey).where(ApiKey.id == revoked.id).values(revoked_at=utcnow()))
        db.commit()
        assert client.get("/ui/").status_code == 303
    with browser(settings, session_factory) as client:
        sign_in(client, expired)
        db.execute(
            update(UiSession)
            .where(UiSession.api_key_id == expired.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.commit()
        assert client.get("/ui/").status_code == 303


def test_console_is_not_part_of_the_api_schema(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]
    assert [p for p in paths if p.startswith("/ui")] == []


def test_pages_carry_a_strict_content_security_policy(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with browser(settings, session_factory) as client:
        page = client.get("/ui/login")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
