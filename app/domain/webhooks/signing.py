"""Standard Webhooks signing: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.

A webhook's secret is never stored: it is derived from the server's key pepper and a random
salt kept on the row, so a copy of the database alone cannot forge deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_salt() -> str:
    return secrets.token_hex(16)


def secret_for(pepper: str, salt: str) -> str:
    """The ``whsec_`` secret a salt stands for."""
    key = hmac.new(pepper.encode(), f"webhook-secret:{salt}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(key).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<signature>`` entry of the ``webhook-signature`` header."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any signature in ``header`` (space-separated) matches: what a receiver does."""
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in header.split())
