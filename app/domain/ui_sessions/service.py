"""Sign-in, sign-out and the principal behind a console session cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal
from app.domain.api_keys import service as api_keys
from app.domain.ui_sessions import repository
from app.errors import Unauthorized


@dataclass(frozen=True)
class SignIn:
    """A new session: the cookie's token (shown to the browser only) and the principal."""

    token: str
    principal: Principal


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(
    session: Session, api_key: str, pepper: str, lifetime: timedelta, replacing: str = ""
) -> SignIn:
    """A new session for a valid API key, ending the browser's previous one (``replacing``);
    401 when the key is unknown or revoked."""
    principal = api_keys.authenticate(session, api_key.strip(), pepper)
    if principal is None:
        raise Unauthorized("The API key is not valid or has been revoked.")
    sign_out(session, replacing)
    now = utcnow()
    repository.remove_expired(session, now)
    token = secrets.token_urlsafe(32)
    repository.add(session, _hash(token), principal.id, now + lifetime)
    return SignIn(token=token, principal=principal)


def principal_for(session: Session, token: str) -> Principal | None:
    """The principal of a live session, or None when the token is unknown, expired or its key
    was revoked."""
    if not token or len(token) > 200:
        return None
    found = repository.principal_of(session, _hash(token), utcnow())
    return None if found is None else Principal(id=found[0], name=found[1], is_admin=found[2])


def sign_out(session: Session, token: str) -> None:
    """Forget the session at once (the cookie stops working even if kept)."""
    if token and len(token) <= 200:
        repository.remove(session, _hash(token))


def csrf_token(token: str, pepper: str) -> str:
    """The session's anti-forgery token: derived, so nothing more is stored."""
    return hmac.new(pepper.encode(), b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def csrf_equal(expected: str, presented: str) -> bool:
    """Constant-time comparison of a form's token with the expected one."""
    return bool(expected) and hmac.compare_digest(expected.encode(), presented.encode())


def csrf_valid(token: str, pepper: str, presented: str | None) -> bool:
    return csrf_equal(csrf_token(token, pepper), presented or "")
