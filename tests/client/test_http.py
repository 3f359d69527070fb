"""Retries, backoff, Retry-After and Idempotency-Key, against a scripted transport."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from stratus.errors import StratusError
from stratus.http import HTTP, Backoff, retry_after_seconds

Handler = Callable[[httpx.Request], httpx.Response]


def _http(handler: Handler, retries: int = 3) -> tuple[HTTP, list[float]]:
    slept: list[float] = []
    http = HTTP(
        "http://stratus.test",
        "secret",
        backoff=Backoff(retries=retries, base_s=0.5, cap_s=4.0),
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
    )
    return http, slept


def test_connection_errors_retry_with_the_same_idempotency_key() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        assert request.headers["Authorization"] == "Bearer secret"
        if len(keys) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"ok": True})

    http, slept = _http(handler)
    assert http.request("POST", "/v1/projects", json={"name": "p"}).json() == {"ok": True}
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5  # grows, with jitter
    assert 0.5 <= slept[1] <= 1.0


def test_a_lost_answer_is_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"n": len(calls)})

    http, _ = _http(handler)
    assert http.request("GET", "/v1/projects").json() == {"n": 2}
    assert "Idempotency-Key" not in calls[0].headers  # only POSTs carry one


def test_429_honours_retry_after_and_503_backs_off() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"code": "rate_limited"}),
        httpx.Response(503, json={"code": "unavailable"}),
        httpx.Response(200, json={}),
    ]
    http, slept = _http(lambda _r: answers.pop(0))
    http.request("GET", "/x")
    assert slept[0] == 7.0
    assert 0.5 <= slept[1] <= 1.0


def test_gives_up_with_one_error_type() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http, slept = _http(refuse, retries=2)
    with pytest.raises(StratusError) as unreachable:
        http.request("GET", "/x")
    assert (unreachable.value.status, unreachable.value.code) == (0, "unreachable")
    assert len(slept) == 2

    busy, _ = _http(lambda _r: httpx.Response(503, json={"code": "x", "detail": "busy"}), 1)
    with pytest.raises(StratusError) as gave_up:
        busy.request("GET", "/x")
    assert (gave_up.value.status, gave_up.value.detail) == (503, "busy")


def test_problem_json_becomes_a_stratus_error_without_retry() -> None:
    problem = {"status": 409, "code": "run_finished", "detail": "The run is already completed."}
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        headers = {"content-type": "application/problem+json"}
        return httpx.Response(409, json=problem, headers=headers)

    http, _ = _http(handler)
    with pytest.raises(StratusError) as caught:
        http.request("POST", "/v1/runs/x/complete", json={})
    error = caught.value
    assert (error.status, error.code, error.detail) == (409, "run_finished", problem["detail"])
    assert error.body == problem
    assert len(calls) == 1
    plain, _ = _http(lambda _r: httpx.Response(502, text="bad gateway"))
    with pytest.raises(StratusError) as text_error:
        plain.request("GET", "/x")
    assert (text_error.value.code, text_error.value.detail) == ("http_502", "bad gateway")


def test_streamed_bodies_are_made_afresh_for_each_attempt() -> None:
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        if len(bodies) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={})

    http, _ = _http(handler)
    http.request("POST", "/upload", content=lambda: iter([b"ab", b"cd"]))
    assert bodies == [b"abcd", b"abcd"]


def test_retry_after_dates_and_backoff_cap() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    backoff = Backoff(base_s=1.0, cap_s=5.0)
    assert all(2.5 <= backoff.delay(10) <= 5.0 for _ in range(50))
