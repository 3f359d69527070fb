"""The REST clouds' shared client: token exchange and caching, retries that honour
Retry-After without repeating a POST the cloud may have done, errors in each cloud's words."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.backends.base import BackendError
from app.backends.cloud.http import CloudHttp, error_text
from app.backends.cloud.tokens import (
    REFRESH_EARLY_S,
    AzureAdToken,
    GoogleServiceAccountToken,
    IbmIamToken,
    StaticToken,
)
from app.backends.ratelimit import InProcessTokenBucket
from tests.backends.contract.clouds import service_account_key
from tests.fakes.azureml import FakeAzureML
from tests.fakes.base import TOKEN
from tests.fakes.vertex import FakeVertex
from tests.fakes.watsonx import FakeWatsonx


@pytest.fixture
def watsonx() -> Iterator[FakeWatsonx]:
    fake = FakeWatsonx()
    fake.start()
    yield fake
    fake.stop()


def test_an_iam_token_is_cached_until_shortly_before_it_expires(watsonx: FakeWatsonx) -> None:
    now = [1000.0]
    tokens = IbmIamToken(f"{watsonx.base_url}/identity/token", "key", clock=lambda: now[0])

    assert tokens.token() == tokens.token() == TOKEN
    assert watsonx.token_exchanges == 1
    now[0] += 3600 - REFRESH_EARLY_S
    assert tokens.token() == TOKEN
    assert watsonx.token_exchanges == 2


def test_a_refused_key_is_not_retryable_and_not_repeated(watsonx: FakeWatsonx) -> None:
    tokens = IbmIamToken(f"{watsonx.base_url}/identity/token", "")
    with pytest.raises(BackendError) as refused:
        tokens.token()
    assert not refused.value.retryable
    assert "400" in str(refused.value)


def test_azure_ad_client_credentials() -> None:
    fake = FakeAzureML()
    fake.start()
    try:
        assert AzureAdToken(fake.base_url, "tenant", "app", "secret").token() == TOKEN
        with pytest.raises(BackendError):
            AzureAdToken(fake.base_url, "tenant", "app", "").token()
    finally:
        fake.stop()


def test_the_service_account_assertion_is_signed_with_its_key(tmp_path: Path) -> None:
    fake = FakeVertex()
    fake.start()
    sent: list[str] = []
    try:
        key_file = service_account_key(tmp_path, fake.base_url)
        tokens = GoogleServiceAccountToken(key_file)
        original = httpx.post

        def spy(url: str, **kw: object) -> httpx.Response:
            sent.append(str(kw["data"]["assertion"]))  # type: ignore[index]
            return original(url, **kw)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(httpx, "post", spy)
            assert tokens.token() == TOKEN
    finally:
        fake.stop()
    header, payload, signature = sent[0].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["aud"] == f"{fake.base_url}/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert claims["exp"] - claims["iat"] == 3600
    pem = json.loads(key_file.read_text())["private_key"].encode()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    key.public_key().verify(
        base64.urlsafe_b64decode(signature + "=="),
        f"{header}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def _client(answers: list[httpx.Response], sleeps: list[float]) -> tuple[CloudHttp, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        assert request.headers["authorization"] == "Bearer t"
        return answers.pop(0)

    client = CloudHttp(
        "test",
        "https://cloud.invalid",
        StaticToken("t"),
        InProcessTokenBucket(1000.0, 1000),
        sleep=sleeps.append,
        transport=httpx.MockTransport(handler),
    )
    return client, seen


def test_throttling_waits_as_long_as_retry_after_says() -> None:
    sleeps: list[float] = []
    client, seen = _client(
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={"ok": 1})],
        sleeps,
    )
    assert client.must("POST", "/jobs", json={}) == {"ok": 1}
    assert seen == ["POST", "POST"]
    assert sleeps == [7.0]


def test_a_post_that_failed_on_the_way_back_is_not_repeated() -> None:
    client, seen = _client([httpx.Response(500, json={"error": {"message": "boom"}})], [])
    with pytest.raises(BackendError) as failed:
        client.must("POST", "/jobs", json={})
    assert failed.value.retryable
    assert seen == ["POST"]


def test_a_get_is_retried_through_server_errors() -> None:
    answers = [httpx.Response(503), httpx.Response(502), httpx.Response(200, json={})]
    client, seen = _client(answers, [])
    assert client.must("GET", "/jobs") == {}
    assert seen == ["GET"] * 3


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "m"}},
            "FAILED_PRECONDITION: m",
        ),
        ({"error": {"code": "UserError", "message": "m"}}, "UserError: m"),
        ({"trace": "x", "errors": [{"code": "conflict", "message": "m"}]}, "conflict: m"),
    ],
)
def test_each_clouds_error_body_in_one_line(body: dict[str, object], words: str) -> None:
    assert error_text(httpx.Response(400, json=body)) == words
