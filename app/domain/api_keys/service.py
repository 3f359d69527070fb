"""API keys: issuing (secret shown once), authenticating by keyed hash, revoking."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal
from app.domain.api_keys import cache, repository
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.domain.audit import service as audit
from app.domain.pagination import PageRequest
from app.errors import Conflict, Forbidden, NotFound

SECRET_PREFIX = "sk_"  # noqa: S105 - a public marker, not a secret


def hash_secret(secret: str, pepper: str) -> str:
    """HMAC-SHA256 of the secret: keys are 256-bit random, so a keyed hash is enough."""
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Only admin keys manage API keys.")


def issue_key(
    session: Session, name: str, admin: bool, pepper: str, created_by: uuid.UUID | None
) -> ApiKeyCreated:
    """Create a key and return it with its secret (never retrievable again)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        prefix=secret[:11],
        key_hash=hash_secret(secret, pepper),
        is_admin=admin,
        created_by=created_by,
    )
    session.add(key)
    session.flush()
    read = ApiKeyRead.model_validate(key)
    return ApiKeyCreated(**read.model_dump(), secret=secret)


def create_key(
    session: Session, principal: Principal, data: ApiKeyCreate, pepper: str
) -> ApiKeyCreated:
    """An admin issues a key."""
    _require_admin(principal)
    created = issue_key(session, data.name, data.admin, pepper, principal.id)
    audit.record(
        session,
        principal,
        "api_key.create",
        "api_key",
        created.id,
        None,
        {"name": data.name, "admin": data.admin},
    )
    return created


def list_keys(
    session: Session, principal: Principal, page: PageRequest
) -> tuple[list[ApiKeyRead], str | None]:
    """Every key (never their secrets)."""
    _require_admin(principal)
    rows, cursor = repository.list_keys(session, page)
    return [ApiKeyRead.model_validate(r) for r in rows], cursor


def revoke_key(session: Session, principal: Principal, key_id: uuid.UUID) -> None:
    """Revoke a key at once; the last active admin key cannot be revoked."""
    _require_admin(principal)
    key = repository.get(session, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found.")
    if key.revoked_at is not None:
        return
    last_admin = Conflict(
        "This is the last active admin key; create another admin key first.", code="last_admin"
    )
    if key.is_admin:
        # Locked: an admin revoking another at this moment waits, then counts again.
        admins = repository.lock_active_admins(session)
        if key.id in admins and len(admins) <= 1:
            raise last_admin
    if not repository.revoke_keeping_an_admin(session, key.id, utcnow()):
        session.refresh(key)
        if key.revoked_at is not None:
            return  # revoked concurrently: the outcome asked for
        raise last_admin
    session.refresh(key)
    cache.principals.forget(key.key_hash)  # at once here; other processes within cache.TTL_S
    audit.record(session, principal, "api_key.revoke", "api_key", key.id, None)


def authenticate(session: Session, secret: str, pepper: str) -> Principal | None:
    """The principal for a presented secret, or None when unknown or revoked.

    An active key is remembered for a few seconds (``cache.TTL_S``), so a revocation reaches
    every API process within that time; the database is read on a miss only.
    """
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    key_hash = hash_secret(secret, pepper)
    principal = cache.principals.get(key_hash)
    if principal is not None:
        return principal
    found = repository.principal_by_hash(session, key_hash)
    if found is None:
        return None
    key_id, name, is_admin = found
    principal = Principal(id=key_id, name=name, is_admin=is_admin)
    cache.principals.put(key_hash, principal)
    return principal


def cached_principal(secret: str, pepper: str) -> Principal | None:
    """The principal for a secret authenticated within the last few seconds, without I/O."""
    key_hash = presented_hash(secret, pepper)
    return None if key_hash is None else cache.principals.get(key_hash)


def presented_hash(secret: str, pepper: str) -> str | None:
    """The keyed hash of a presented secret; None when it cannot be a key at all."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    return hash_secret(secret, pepper)


def recently_authenticated(key_hash: str) -> bool:
    """Whether the key was found active within the last ``cache.TTL_S``, without I/O."""
    return cache.principals.get(key_hash) is not None


def has_any_admin(session: Session) -> bool:
    """Whether any active admin key exists (first-start bootstrap)."""
    return repository.count_active_admins(session) > 0
