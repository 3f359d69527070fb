"""Throttling is retried and stays retryable; other AWS errors map to BackendError."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.retries.standard import ExponentialBackoff
from moto.core.botocore_stubber import MockRawResponse

from app.backends.base import BackendError, EndpointState
from app.backends.sagemaker import MAX_ATTEMPTS, SageMakerBackend, _translate
from tests.backends.conftest import endpoint_name


class CountingBucket:
    """A budget that never runs out and counts what was taken."""

    def __init__(self) -> None:
        self.taken = 0

    def try_take(self) -> float:
        self.taken += 1
        return 0.0

    def acquire(self, timeout_s: float) -> None:
        self.try_take()


def _error_response(code: str, status: int) -> Callable[..., AWSResponse]:
    def respond(request: Any) -> AWSResponse:
        body = json.dumps({"__type": code, "message": f"{code} injected"})
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, MockRawResponse(body))

    return respond


def inject(backend: SageMakerBackend, code: str, status: int, times: int) -> dict[str, int]:
    """Answer the first ``times`` SageMaker requests with an error instead of sending them."""
    sent = {"errors": 0}
    respond = _error_response(code, status)

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        if sent["errors"] < times:
            sent["errors"] += 1
            return respond(request)
        return None

    backend.sm.meta.events.register("before-send.sagemaker", hook)
    return sent


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Botocore's backoff sleeps up to seconds; the retry decisions are what is tested."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda *_: 0)


def test_throttling_is_retried_and_every_attempt_takes_a_token(backend: SageMakerBackend) -> None:
    bucket = CountingBucket()
    backend.limiter = bucket
    name = endpoint_name()
    sent = inject(backend, "ThrottlingException", 400, times=2)

    status = backend.describe_endpoints([name])[name]

    assert status.state is EndpointState.GONE
    assert sent["errors"] == 2
    assert bucket.taken == 3


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
    ],
)
def test_persistent_throttling_or_outage_is_retryable(
    backend: SageMakerBackend, code: str, status: int
) -> None:
    sent = inject(backend, code, status, times=100)
    with pytest.raises(BackendError) as caught:
        backend.describe_endpoints([endpoint_name()])
    assert caught.value.retryable is True
    assert code in str(caught.value)
    assert sent["errors"] == MAX_ATTEMPTS


@pytest.mark.parametrize("code", ["AccessDeniedException", "ValidationException"])
def test_refusals_are_not_retryable(backend: SageMakerBackend, code: str) -> None:
    inject(backend, code, 400, times=1)
    with pytest.raises(BackendError) as caught:
        backend.update_capacity(endpoint_name(), 2)
    assert caught.value.retryable is False
    assert f"DescribeEndpoint: {code}: {code} injected" in str(caught.value)


def test_resource_limit_is_retryable(backend: SageMakerBackend) -> None:
    inject(backend, "ResourceLimitExceeded", 400, times=1)
    with pytest.raises(BackendError) as caught:
        backend.stop_training("stratus-r-x")
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (EndpointConnectionError(endpoint_url="https://api.sagemaker"), True),
        (ReadTimeoutError(endpoint_url="https://api.sagemaker"), True),
        (NoCredentialsError(), False),
        (
            ClientError(
                {
                    "Error": {"Code": "SomethingNew", "Message": "boom"},
                    "ResponseMetadata": {"HTTPStatusCode": 502},
                },
                "CreateEndpoint",
            ),
            True,
        ),
        (
            ClientError(
                {"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}},
                "InvokeEndpoint",
            ),
            True,
        ),
        (
            ClientError(
                {
                    "Error": {"Code": "ModelError", "Message": "bad input"},
                    "ResponseMetadata": {"HTTPStatusCode": 424},
                },
                "InvokeEndpoint",
            ),
            False,
        ),
    ],
)
def test_translation(exc: Exception, retryable: bool) -> None:
    assert isinstance(exc, ClientError | BotoCoreError)
    error = _translate(exc)
    assert error.retryable is retryable
