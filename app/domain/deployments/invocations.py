"""Requests to deployed models: the caller's access, then one call to the backend.

The deployment is resolved in a short transaction that the caller ends before the model is
called, so no database connection is held while the backend works.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.backends.base import BackendError, Invocation, ModelError, NotFoundError
from app.domain.access import Principal
from app.domain.backend_calls import backend_named, http_error
from app.domain.deployments import service
from app.errors import BadGateway, ServiceUnavailable, Unprocessable


@dataclass(frozen=True)
class Target:
    """Where a deployment's requests go."""

    backend: str
    endpoint: str


@dataclass(frozen=True)
class Answer:
    """The model's answer, passed back as is (its own 4xx included)."""

    status_code: int
    body: bytes
    content_type: str


def resolve(session: Session, principal: Principal, deployment_id: uuid.UUID) -> Target:
    """The endpoint of a deployment that serves traffic, once the caller may invoke it."""
    backend, endpoint = service.invocation_target(session, principal, deployment_id)
    return Target(backend, endpoint)


def invoke(target: Target, body: bytes, content_type: str) -> Answer:
    """Send ``body`` to the model; its 4xx answers are the caller's, as the model gave them."""
    backend = backend_named(target.backend)
    try:
        result: Invocation = backend.invoke(target.endpoint, body, content_type)
    except ModelError as error:
        if 400 <= error.status_code < 500:  # the caller's input: the model's answer, as is
            return Answer(error.status_code, error.body, error.content_type)
        raise BadGateway(str(error)) from error
    except NotFoundError as error:  # the poller will notice and mark the deployment
        raise ServiceUnavailable(
            f"The deployment's endpoint is not reachable: {error}", headers={"Retry-After": "5"}
        ) from error
    except BackendError as error:
        raise http_error(error) from error
    return Answer(200, result.body, result.content_type)


def predict(target: Target, instances: list[Any]) -> dict[str, Any]:
    """TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""
    payload = json.dumps({"instances": instances}).encode()
    answer = invoke(target, payload, "application/json")
    if answer.status_code != 200:
        snippet = answer.body[:300].decode("utf-8", errors="replace")
        raise Unprocessable(
            f"the model answered {answer.status_code}: {snippet}", code="model_rejected_input"
        )
    try:
        decoded = json.loads(answer.body)
    except ValueError as error:
        raise BadGateway("The model did not answer with JSON.") from error
    if isinstance(decoded, dict) and "predictions" in decoded:
        return {"predictions": decoded["predictions"]}
    return {"predictions": decoded if isinstance(decoded, list) else [decoded]}
