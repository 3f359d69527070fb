"""Requests to deployed models: SageMaker-style invocations and the TF Serving REST shape.

The deployment is resolved in a short transaction that ends before the model is called, so no
database connection is held while the backend works.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from app.api.deps import PrincipalDep, SessionDep
from app.domain.deployments import invocations
from app.domain.schemas import WriteModel
from app.errors import problem_responses

router = APIRouter(tags=["serving"])
ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 502, 503)


class PredictRequest(WriteModel):
    """TF Serving's row format."""

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"instances": [{"user": 7, "k": 10}]}]},
    }

    instances: list[Any] = Field(description="Rows to score, each as the model expects it.")


def _target(
    session: SessionDep, principal: PrincipalDep, deployment_id: uuid.UUID
) -> invocations.Target:
    target = invocations.resolve(session, principal, deployment_id)
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
    target = await run_in_threadpool(_target, session, principal, deployment_id)
    body = await request.body()
    answer = await run_in_threadpool(invocations.invoke, target, body, content_type)
    return Response(answer.body, status_code=answer.status_code, media_type=answer.content_type)


@router.post("/v1/deployments/{deployment_id}/v1/models/{model_name}:predict", responses=ERRORS)
def predict(
    deployment_id: uuid.UUID,
    model_name: str,  # noqa: ARG001 - one model per deployment: any name reaches it
    data: Annotated[PredictRequest, Body()],
    session: SessionDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""
    return invocations.predict(_target(session, principal, deployment_id), data.instances)
