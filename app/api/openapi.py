"""OpenAPI tweaks: validation errors are documented as the problem+json they really are."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON, problem_schema


def _validation_problem() -> dict[str, Any]:
    schema = problem_schema()
    schema["properties"]["errors"] = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        },
    }
    return schema


def install(app: FastAPI) -> None:
    """Replace FastAPI's default 422 body with the problem+json the handlers send."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for item in spec.get("paths", {}).values():
            for op in item.values():
                responses = op.get("responses", {})
                if "422" in responses:
                    responses["422"] = {
                        "description": "Invalid input",
                        "content": {PROBLEM_JSON: {"schema": _validation_problem()}},
                    }
        schemas = spec.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
