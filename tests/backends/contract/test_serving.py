"""The serving half of the backend contract: create once, scale to an absolute count, the
model's own 4xx and 5xx passed through, delete once."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from app.backends import naming
from app.backends.base import EndpointState, ModelError
from tests.backends.contract.helpers import wait_endpoint


@pytest.fixture
def endpoint(harness: Any) -> Any:
    name = naming.endpoint_name(uuid.uuid4())
    first = harness.backend.create_endpoint(harness.endpoint_spec(name, 1))
    again = harness.backend.create_endpoint(harness.endpoint_spec(name, 1))  # a retried create
    assert again.external_id == first.external_id
    wait_endpoint(harness, name, EndpointState.IN_SERVICE, 1)
    yield name
    harness.backend.delete_endpoint(name)


def test_scaling_sets_the_absolute_count(harness: Any, endpoint: str) -> None:
    harness.backend.update_capacity(endpoint, 2)

    status = wait_endpoint(harness, endpoint, EndpointState.IN_SERVICE, 2)

    assert status.current_instances == harness.replicas(endpoint) == 2
    calls = harness.api_calls()
    assert harness.backend.update_capacity(endpoint, 2).current_instances == 2
    assert harness.api_calls() - calls <= 3  # already there: read, nothing changed


def test_the_models_answers_and_errors_pass_through(harness: Any, endpoint: str) -> None:
    answer = harness.backend.invoke(endpoint, b'{"x": 1}', "application/json")
    assert answer.latency_ms >= 0
    if harness.name != "sagemaker":  # moto answers every request with a canned body
        assert json.loads(answer.body) == {"echo": '{"x": 1}'}

    for status in (400, 500):
        with pytest.raises(ModelError) as refused:
            harness.backend.invoke(
                endpoint, json.dumps({"status": status}).encode(), "application/json"
            )
        assert refused.value.status_code == status
        assert f"model says {status}".encode() in refused.value.body
        assert not refused.value.retryable


def test_delete_is_idempotent(harness: Any) -> None:
    name = naming.endpoint_name(uuid.uuid4())
    harness.backend.create_endpoint(harness.endpoint_spec(name, 1))
    wait_endpoint(harness, name, EndpointState.IN_SERVICE, 1)

    harness.backend.delete_endpoint(name)
    harness.backend.delete_endpoint(name)

    assert wait_endpoint(harness, name, EndpointState.GONE).current_instances == 0
