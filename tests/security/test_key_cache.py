"""The per-process memory of accepted API keys: a revoked key is refused at once by the process
that revoked it and by every other process within ``cache.TTL_S`` (at most 5 seconds)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal
from app.domain.api_keys import cache
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.service import authenticate, hash_secret, revoke_key
from tests.factories import PEPPER, make_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A fresh process-wide cache on a clock the test moves."""
    fake = Clock()
    monkeypatch.setattr(cache, "principals", cache.PrincipalCache(clock=fake))
    return fake


def test_revocation_reaches_every_process_within_five_seconds() -> None:
    assert 0 < cache.TTL_S <= 5


def test_a_key_revoked_elsewhere_is_refused_once_its_entry_lapses(
    db: Session, clock: Clock
) -> None:
    key = make_key(db)
    assert authenticate(db, key.secret, PEPPER) == key.principal
    # Another API process revokes it: this one does not hear of it ...
    row = db.get(ApiKey, key.id)
    assert row is not None
    row.revoked_at = utcnow()
    db.flush()
    clock.now += cache.TTL_S - 0.1
    assert authenticate(db, key.secret, PEPPER) == key.principal  # ... for at most TTL_S
    clock.now += 0.1
    assert authenticate(db, key.secret, PEPPER) is None
    clock.now += 60
    assert authenticate(db, key.secret, PEPPER) is None


def test_a_key_revoked_here_is_refused_at_once_and_not_cached_again(
    db: Session, clock: Clock
) -> None:
    admin, key = make_key(db, admin=True), make_key(db)
    assert authenticate(db, key.secret, PEPPER) == key.principal
    revoke_key(db, admin.principal, key.id)
    db.flush()
    assert authenticate(db, key.secret, PEPPER) is None
    # A request that read the key just before the revocation committed cannot cache it anew.
    key_hash = hash_secret(key.secret, PEPPER)
    cache.principals.put(key_hash, key.principal)
    assert cache.principals.get(key_hash) is None
    clock.now += cache.TTL_S
    cache.principals.put(key_hash, key.principal)  # a lapsed tombstone no longer blocks
    assert cache.principals.get(key_hash) == key.principal


def test_unknown_secrets_are_not_remembered(db: Session, clock: Clock) -> None:
    for _ in range(3):
        assert authenticate(db, f"sk_{uuid.uuid4().hex}", PEPPER) is None
    assert len(cache.principals) == 0


def test_the_cache_keeps_at_most_max_keys() -> None:
    small = cache.PrincipalCache(max_keys=3)
    principals = [Principal(uuid.uuid4(), f"k{i}", False) for i in range(5)]
    for i, principal in enumerate(principals):
        small.put(f"hash-{i}", principal)
    assert [small.get(f"hash-{i}") for i in range(5)] == [None, None, *principals[2:]]


def test_a_revoked_key_is_refused_at_once_through_the_api(
    client: TestClient, db: Session, clock: Clock
) -> None:
    admin, key = make_key(db, admin=True), make_key(db)
    db.commit()
    url = "/v1/projects"
    for _ in range(2):  # the second answer comes from the cache
        assert client.get(url, headers=key.headers).status_code == 200
    assert client.delete(f"/v1/api-keys/{key.id}", headers=admin.headers).status_code == 204
    r = client.get(url, headers=key.headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
