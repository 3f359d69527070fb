"""Requests to deployed models: SageMaker-style invocations and the TF Serving REST shape.

The deployment is resolved in a short transaction that ends before the model is called, so no
database connection is held while the backend works.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import PrincipalDep, SessionDep
from app.backends.base import Backend, BackendError, Invocation, ModelError, NotFoundError
from app.backends.registry import get_backend
from app.domain.deployments import service
from app.domain.schemas import WriteModel
from app.errors import (
    BadGateway,
    Conflict,
    ServiceUnavailable,
    Unprocessable,
    problem_responses,
)

router = APIRouter(tags=["serving"])
ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 502, 503)


class PredictRequest(WriteModel):
    """TF Serving's row format."""

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"instances": [{"user": 7, "k": 10}]}]},
    }

    instances: list[Any]


def _backend(name: str) -> Backend:
    backend = get_backend(name)
    if backend is None:
        raise Conflict(f"No compute backend is configured for {name!r}.", code="no_backend")
    return backend


class ModelAnswered(Exception):  # noqa: N818 - carries the model's own error answer
    def __init__(self, error: ModelError) -> None:
        super().__init__(str(error))
        self.error = error


def _invoke(backend: Backend, endpoint: str, body: bytes, content_type: str) -> Invocation:
    try:
        return backend.invoke(endpoint, body, content_type)
    except ModelError as error:
        if 400 <= error.status_code < 500:
            raise ModelAnswered(error) from error  # the caller's input: its answer, as is
        raise BadGateway(str(error)) from error
    except NotFoundError as error:  # the poller will notice and mark the deployment
        raise ServiceUnavailable(
            f"The deployment's endpoint is not reachable: {error}", headers={"Retry-After": "5"}
        ) from error
    except BackendError as error:
        if error.retryable:
            raise ServiceUnavailable(str(error), headers={"Retry-After": "1"}) from error
        raise BadGateway(str(error)) from error


def _target(
    session: SessionDep, principal: PrincipalDep, deployment_id: uuid.UUID
) -> tuple[str, str]:
    target = service.invocation_target(session, principal, deployment_id)
    session.close()  # end the transaction before calling the model
    return target


@router.post(
    "/v1/deployments/{deployment_id}/invocations",
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {}, "example": {"user": 7, "k": 10}}},
        }
    },
)
async def invoke(
    deployment_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    content_type: Annotated[str, Header()] = "application/json",
) -> Response:
    """Send the request body to the deployed model and return its answer as is."""
    backend_name, endpoint = await run_in_threadpool(_target, session, principal, deployment_id)
    body = await request.body()
    try:
        result = await run_in_threadpool(
            _invoke, _backend(backend_name), endpoint, body, content_type
        )
    except ModelAnswered as answered:
        error = answered.error
        return Response(error.body, status_code=error.status_code, media_type=error.content_type)
    return Response(result.body, media_type=result.content_type)


@router.post("/v1/deployments/{deployment_id}/v1/models/{model_name}:predict", responses=ERRORS)
def predict(
    deployment_id: uuid.UUID,
    model_name: str,  # noqa: ARG001 - one model per deployment: any name reaches it
    data: Annotated[PredictRequest, Body()],
    session: SessionDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""
    backend_name, endpoint = _target(session, principal, deployment_id)
    payload = json.dumps({"instances": data.instances}).encode()
    try:
        result = _invoke(_backend(backend_name), endpoint, payload, "application/json")
    except ModelAnswered as answered:
        raise Unprocessable(str(answered.error), code="model_rejected_input") from answered
    try:
        answer = json.loads(result.body)
    except ValueError as error:
        raise BadGateway("The model did not answer with JSON.") from error
    if isinstance(answer, dict) and "predictions" in answer:
        return {"predictions": answer["predictions"]}
    return {"predictions": answer if isinstance(answer, list) else [answer]}
