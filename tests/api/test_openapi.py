"""The OpenAPI document: every request body carries one example, accepted as sent."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import make_evaluation, make_run
from tests.security.world import World, build_world


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]


def _example(spec: dict[str, Any], op: dict[str, Any]) -> Any:
    content = op["requestBody"]["content"]["application/json"]
    if "example" in content:  # a body passed through to the model as is
        return content["example"]
    schema = content["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    examples = spec["components"]["schemas"][name].get("examples")
    assert examples, f"{name} has no example"
    assert len(examples) == 1, f"{name} should carry exactly one example"
    return examples[0]


def test_docs_and_schema_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Stratus"
    assert len(_operations(spec)) >= 8


def test_every_error_response_is_declared_as_problem_json(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path in ("/healthz", "/readyz"):
                continue
            assert "401" in op["responses"], f"{method} {path} does not declare 401"
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response.get("content", {}), (
                        f"{method} {path} {status}"
                    )


def test_the_bundle_upload_documents_its_gzip_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/projects/{project_id}/code-bundles"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/gzip", "application/x-gzip"}
    assert {"413", "415", "422"} <= set(op["responses"])


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


TRACKED_RUN_ACTIONS = ("complete", "fail", "params")


def test_every_request_body_example_is_accepted_as_sent(
    client: TestClient, db: Session, world: World
) -> None:
    spec = client.get("/openapi.json").json()
    side = world.own
    # The alias example carries a gate: give the version an evaluation that passes it.
    make_evaluation(db, side.model, status="completed", final_metrics={"ndcg_at_10": 0.5})
    db.commit()
    ids = {
        "project_id": side.project.id,
        "principal_id": world.keys["viewer"].id,
        "run_id": side.run.id,
        "model_version_id": side.model.id,
        "deployment_id": side.deployment.id,
        "key_id": world.spare_key.id,
        "model_name": "default",
        "evaluation_id": side.evaluation.id,
        "webhook_id": side.webhook.id,
        "delivery_id": side.delivery.id,
        "name": side.model.name,
        "alias": "production",
    }
    for method, path, op in _operations(spec):
        example = _example(spec, op)
        if isinstance(example, dict) and "model_version_id" in example:
            example = example | {"model_version_id": str(side.model.id)}
        key = world.keys["admin"] if path.startswith("/v1/api-keys") else world.keys["owner"]
        url = path.format(**ids)
        if path.rsplit("/", 1)[-1] in TRACKED_RUN_ACTIONS:  # each finishes its own external run
            tracked = make_run(db, side.project, backend="external", status="running")
            url = path.format(**ids | {"run_id": tracked.id})
        r = client.request(method, url, json=example, headers=key.headers)
        if "/invocations" in path or ":predict" in path:
            # Passed through to a model: the API accepts it; what the model says is its own.
            assert r.status_code not in (400, 422), f"{method} {path}: {r.text}"
            continue
        assert 200 <= r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
