"""Requests to deployed models: SageMaker-style invocations and the TF Serving REST shape.

Both take the lean path of ``invocations.serve``: the caller's route from the process's
cache (the database only on a miss, never while the model works), the model called on the
event loop, the body passed through as received.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from pydantic import Field

from app.api.deps import SecretDep
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
    secret: SecretDep,
    content_type: Annotated[str, Header()] = "application/json",
) -> Response:
    """Send the request body to the deployed model and return its answer as is."""
    state = request.app.state
    answer = await invocations.serve(
        state.settings,
        state.session_factory,
        secret,
        deployment_id,
        await request.body(),
        content_type,
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.content_type)


@router.post("/v1/deployments/{deployment_id}/v1/models/{model_name}:predict", responses=ERRORS)
async def predict(
    deployment_id: uuid.UUID,
    model_name: str,  # noqa: ARG001 - one model per deployment: any name reaches it
    data: Annotated[PredictRequest, Body()],
    request: Request,
    secret: SecretDep,
) -> dict[str, Any]:
    """TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""
    state = request.app.state
    return await invocations.predict(
        state.settings, state.session_factory, secret, deployment_id, data.instances
    )
