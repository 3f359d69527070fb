"""OpenAPI tweaks: validation errors are documented as the problem+json they really are."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from app.errors import PROBLEM_JSON, problem_responses, problem_schema


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


# Request bodies that routes parse from raw bytes themselves, so FastAPI does not see them.
_RAW_BODIES: dict[str, TypeAdapter[Any]] = {}


def body_from_bytes(name: str, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body the route parses itself, as component ``name``."""
    _RAW_BODIES[name] = adapter
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _add_raw_bodies(spec: dict[str, Any]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, adapter in _RAW_BODIES.items():
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema


def _add_input_errors(op: dict[str, Any], responses: dict[str, Any]) -> None:
    """Declare the errors every operation can answer before its route runs: 400 for a NUL
    character in the path, query or headers (``inputs.RejectUnstorableText``) or an undecodable
    body; for one that takes a body, 413 (``limits.BodySizeLimit``), 415 (not JSON) and 422."""
    statuses = [400]
    if "requestBody" in op:
        statuses += [413, 415, 422]
    for status, declared in problem_responses(*statuses).items():
        responses.setdefault(str(status), declared)
    # Numeric status order, as the routes declare them.
    ordered = dict(sorted(responses.items(), key=lambda kv: (not kv[0].isdigit(), kv[0])))
    responses.clear()
    responses.update(ordered)


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`sk_…`), sent as `Authorization: Bearer <key>`.",
}


def _add_security(spec: dict[str, Any]) -> None:
    """Declare the bearer scheme and require it on every operation that can answer 401, so
    the docs page's Authorize button applies the key to them."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = BEARER
    for item in spec.get("paths", {}).values():
        for op in item.values():
            if "401" in op.get("responses", {}):
                # An operation that declares its own (e.g. optional) security keeps it.
                op.setdefault("security", [{"bearerAuth": []}])


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
                responses = op.setdefault("responses", {})
                _add_input_errors(op, responses)
                if "422" in responses:
                    responses["422"] = {
                        "description": "Invalid input",
                        "content": {PROBLEM_JSON: {"schema": _validation_problem()}},
                    }
        _add_raw_bodies(spec)
        _add_security(spec)
        schemas = spec.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
