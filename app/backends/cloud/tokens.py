"""Bearer tokens for the clouds, cached until shortly before they expire.

- Google: a service-account key signs a JWT that oauth2 exchanges for an access token
  (RFC 7523, ``urn:ietf:params:oauth:grant-type:jwt-bearer``), or a static token.
- Azure: Azure AD (Entra ID) client credentials for ``https://management.azure.com/.default``.
- IBM Cloud: IAM exchanges an API key (``urn:ibm:params:oauth:grant-type:apikey``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.backends.base import BackendError

REFRESH_EARLY_S = 120.0  # renew this long before expiry, so no request carries a dying token
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
IBM_APIKEY = "urn:ibm:params:oauth:grant-type:apikey"


class StaticToken:
    """A token given in the settings (short-lived, or a test's)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def token(self) -> str:
        return self._value


class CachedToken(ABC):
    """A token fetched on first use and again when it is about to expire."""

    def __init__(self, clock: Callable[[], float] = time.time, timeout_s: float = 30.0) -> None:
        self._clock = clock
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._value: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def token(self) -> str:
        with self._lock:
            if self._value is None or self._clock() >= self._expires_at - REFRESH_EARLY_S:
                value, lifetime = self._fetch()
                self._value, self._expires_at = value, self._clock() + lifetime
                self.fetches += 1
            return self._value

    @abstractmethod
    def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""

    def _exchange(self, url: str, form: dict[str, str], what: str) -> tuple[str, float]:
        try:
            response = httpx.post(url, data=form, timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise BackendError(f"{what} token: {type(exc).__name__}", retryable=True) from exc
        if response.status_code >= 400:
            # 4xx: the credentials are wrong; the body may echo them, so it is not repeated.
            raise BackendError(
                f"{what} token refused ({response.status_code})",
                retryable=response.status_code == 429 or response.status_code >= 500,
            )
        body: dict[str, Any] = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))


class GoogleServiceAccountToken(CachedToken):
    """A Google access token from a service-account key file (needs ``cryptography``)."""

    def __init__(self, key_file: Path, token_url: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        key = json.loads(key_file.read_text())
        self._email = str(key["client_email"])
        self._private_key = str(key["private_key"])
        self._token_url = token_url or str(
            key.get("token_uri", "https://oauth2.googleapis.com/token")
        )

    def _fetch(self) -> tuple[str, float]:
        now = int(self._clock())
        claims = {
            "iss": self._email,
            "scope": GOOGLE_SCOPE,
            "aud": self._token_url,
            "iat": now,
            "exp": now + 3600,
        }
        assertion = sign_rs256(self._private_key, claims)
        return self._exchange(
            self._token_url, {"grant_type": JWT_BEARER, "assertion": assertion}, "Google"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_rs256(private_key_pem: str, claims: dict[str, Any]) -> str:
    """A compact JWS (RS256) of ``claims``."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:  # an optional extra: a static token needs none of it
        raise BackendError(
            "signing a service-account key needs cryptography: pip install 'stratus[vertex]'",
            retryable=False,
        ) from exc

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BackendError("the service-account key is not an RSA key", retryable=False)
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{_b64(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()))}"


class AzureAdToken(CachedToken):
    """An Azure Resource Manager token by the client-credentials grant."""

    def __init__(
        self, authority: str, tenant_id: str, client_id: str, client_secret: str, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": "https://management.azure.com/.default",
        }

    def _fetch(self) -> tuple[str, float]:
        return self._exchange(self._url, self._form, "Azure AD")


class IbmIamToken(CachedToken):
    """An IBM Cloud IAM token for an API key."""

    def __init__(self, iam_url: str, api_key: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._url = iam_url
        self._form = {"grant_type": IBM_APIKEY, "apikey": api_key}

    def _fetch(self) -> tuple[str, float]:
        return self._exchange(self._url, self._form, "IBM IAM")
