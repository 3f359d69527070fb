"""Every request example in the OpenAPI document, sent as written to a fresh `stratus dev`, in
the order a user would: each must not only be accepted but do what it says (the run trains,
the deployment serves, the model answers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devserver import checkout_dev
from tests.test_embedded import Dev

pytestmark = pytest.mark.slow


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    with checkout_dev(tmp_path) as server:
        yield server


def _examples(spec: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(method, path) -> the first example of its JSON body."""
    found: dict[tuple[str, str], Any] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                continue
            schema = media.get("schema", {})
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            examples = schema.get("examples") or ([media["example"]] if "example" in media else [])
            if examples:
                found[(method.upper(), path)] = examples[0]
    return found


def _until(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def test_every_example_succeeds_on_a_fresh_dev(dev: Dev) -> None:
    admin = {"Authorization": f"Bearer {(dev.data_dir / 'admin-key').read_text().strip()}"}
    http = httpx.Client(base_url=dev.base_url, headers=admin, timeout=30)
    examples = _examples(http.get("/openapi.json").json())
    sent: set[tuple[str, str]] = set()

    def send(method: str, path: str, expect: int, body: Any = None, **ids: Any) -> Any:
        key = (method, path)
        payload = examples[key] if body is None else body
        sent.add(key)
        r = http.request(method, path.format(**ids), json=payload)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    key = send("POST", "/v1/api-keys", 201)
    project = send("POST", "/v1/projects", 201)["id"]
    send("PATCH", "/v1/projects/{project_id}", 200, project_id=project)
    send(
        "PUT",
        "/v1/projects/{project_id}/members/{principal_id}",
        200,
        project_id=project,
        principal_id=key["id"],
    )

    run = send("POST", "/v1/projects/{project_id}/runs", 201, project_id=project)
    trained = _until(
        "finished run",
        lambda: (
            (r := http.get(f"/v1/runs/{run['id']}").json())["status"]
            in ("completed", "failed", "stopped")
            and r
        ),
    )
    assert trained["status"] == "completed", trained
    assert "loss" in trained["final_metrics"]
    send("POST", "/v1/runs/{run_id}/metrics", 201, run_id=run["id"])
    model = next(
        m
        for m in http.get(f"/v1/projects/{project}/models").json()["items"]
        if m["source_run_id"] == run["id"]
    )
    send("POST", "/v1/projects/{project_id}/models", 201, project_id=project)

    # The evaluation example scores the trained version on the recommender's held-out split;
    # the alias example then gates "production" on its nDCG@10.
    evaluation = send(
        "POST", "/v1/models/{model_version_id}/evaluations", 201, model_version_id=model["id"]
    )
    evaluated = _until(
        "finished evaluation",
        lambda: (
            (e := http.get(f"/v1/evaluations/{evaluation['id']}").json())["status"]
            in ("completed", "failed", "stopped")
            and e
        ),
    )
    assert evaluated["status"] == "completed", evaluated
    assert set(evaluated["final_metrics"]) == {"ndcg_at_10", "precision_at_10", "recall_at_10"}
    alias = send(
        "PUT",
        "/v1/projects/{project_id}/registered-models/{name}/aliases/{alias}",
        200,
        project_id=project,
        name=model["name"],
        alias="production",
    )
    assert alias["model_version_id"] == model["id"]

    for action in ("complete", "fail", "params"):  # each on a tracked run of its own
        tracked = http.post(
            f"/v1/projects/{project}/runs", json={"name": f"nb-{action}", "backend": "external"}
        ).json()
        send("POST", f"/v1/runs/{{run_id}}/{action}", 200, run_id=tracked["id"])

    # The deployment example names a model version; on a fresh server it is the trained one.
    deploy_example = examples[("POST", "/v1/projects/{project_id}/deployments")]
    body = deploy_example | {"model_version_id": model["id"]}
    deployment = send(
        "POST", "/v1/projects/{project_id}/deployments", 201, body=body, project_id=project
    )
    _until(
        "deployment in service",
        lambda: http.get(f"/v1/deployments/{deployment['id']}").json()["status"] == "in_service",
    )
    answer = send(
        "POST", "/v1/deployments/{deployment_id}/invocations", 200, deployment_id=deployment["id"]
    )
    assert (
        len(answer["items"])
        == examples[("POST", "/v1/deployments/{deployment_id}/invocations")]["k"]
    )
    predicted = send(
        "POST",
        "/v1/deployments/{deployment_id}/v1/models/{model_name}:predict",
        200,
        deployment_id=deployment["id"],
        model_name="recommender",
    )
    assert len(predicted["predictions"]) == 1
    send("POST", "/v1/deployments/{deployment_id}/metrics", 201, deployment_id=deployment["id"])
    send("POST", "/v1/deployments/{deployment_id}/what-if", 200, deployment_id=deployment["id"])
    send("PATCH", "/v1/deployments/{deployment_id}", 200, deployment_id=deployment["id"])
    assert http.delete(f"/v1/deployments/{deployment['id']}").status_code == 202

    # Every step above was recorded as an event; the webhook example subscribes to them.
    send("POST", "/v1/projects/{project_id}/webhooks", 201, project_id=project)
    events = http.get(f"/v1/projects/{project}/events", params={"limit": 500}).json()["items"]
    recorded = {e["type"] for e in events}
    assert {"run.created", "run.completed", "model_version.created"} <= recorded
    assert {"deployment.created", "deployment.in_service"} <= recorded

    assert sent == set(examples), f"examples not exercised: {set(examples) - sent}"
