"""Every route × {no key, viewer, editor, owner, admin} × {own project, other project}.

Deny by default: no key is 401, a role below the route's need is 403, and an object of a
project the key is not a member of answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.backends.local.examples import recommender_evaluation
from app.main import create_app
from app.settings import Settings
from tests.factories import LOCAL_SPEC
from tests.security.world import Side, World, build_world

RANK = {"viewer": 1, "editor": 2, "owner": 3}
PRINCIPALS = ["none", "viewer", "editor", "owner", "admin"]
DENIED = {401, 403, 404}

Body = Callable[[World, Side], dict[str, Any]] | None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    need: str  # viewer | editor | owner (per project), admin, or any (any valid key)
    body: Body = field(default=None, compare=False)
    gzip: bytes | None = field(default=None, compare=False)  # a raw application/gzip body

    @property
    def scoped(self) -> bool:
        return self.need in RANK


def _run_body(_w: World, _s: Side) -> dict[str, Any]:
    return {"name": "r", "spec": LOCAL_SPEC}


def _deployment_body(_w: World, s: Side) -> dict[str, Any]:
    return {"name": "d2", "model_version_id": str(s.model.id), "instance_type": "local"}


ALIAS = "/v1/projects/{project_id}/registered-models/{name}/aliases/{alias}"


def _points(_w: World, _s: Side) -> dict[str, Any]:
    return {"points": [{"name": "loss", "value": 0.5, "step": 1}]}


ROUTES = [
    Route("POST", "/v1/projects", "any", lambda _w, _s: {"name": "fresh-project"}),
    Route("GET", "/v1/projects", "any"),
    Route("GET", "/v1/projects/{project_id}", "viewer"),
    Route("PATCH", "/v1/projects/{project_id}", "owner", lambda _w, _s: {"description": "x"}),
    Route("DELETE", "/v1/projects/{project_id}", "owner"),
    Route("GET", "/v1/projects/{project_id}/members", "viewer"),
    Route("GET", "/v1/projects/{project_id}/members/{principal_id}", "viewer"),
    Route(
        "PUT",
        "/v1/projects/{project_id}/members/{principal_id}",
        "owner",
        lambda _w, _s: {"role": "viewer"},
    ),
    Route("DELETE", "/v1/projects/{project_id}/members/{principal_id}", "owner"),
    Route("GET", "/v1/projects/{project_id}/audit-events", "owner"),
    Route("POST", "/v1/api-keys", "admin", lambda _w, _s: {"name": "new-key"}),
    Route("GET", "/v1/api-keys", "admin"),
    Route("DELETE", "/v1/api-keys/{key_id}", "admin"),
    Route("GET", "/v1/audit-events", "admin"),
    Route("POST", "/v1/projects/{project_id}/runs", "editor", _run_body),
    Route("GET", "/v1/projects/{project_id}/runs", "viewer"),
    Route("GET", "/v1/runs/{run_id}", "viewer"),
    Route("POST", "/v1/runs/{run_id}/stop", "editor"),
    Route("POST", "/v1/runs/{run_id}/complete", "editor", lambda _w, _s: {}),
    Route("POST", "/v1/runs/{run_id}/fail", "editor", lambda _w, _s: {"reason": "x"}),
    Route(
        "POST", "/v1/runs/{run_id}/params", "editor", lambda _w, _s: {"hyperparameters": {"a": 1}}
    ),
    Route("POST", "/v1/runs/{run_id}/metrics", "editor", _points),
    Route("GET", "/v1/runs/{run_id}/metrics", "viewer"),
    Route("GET", "/v1/models/{model_version_id}", "viewer"),
    # Allowed callers get 409: the world's artifacts lie outside what Stratus serves.
    Route("GET", "/v1/models/{model_version_id}/artifact", "viewer"),
    # Allowed callers get 422 for these bytes, so nothing is written to a store.
    Route("POST", "/v1/projects/{project_id}/code-bundles", "editor", gzip=b"not a tarball"),
    Route("GET", "/v1/projects/{project_id}/code-bundles", "viewer"),
    Route("GET", "/v1/code-bundles/{bundle_id}", "viewer"),
    Route("GET", "/v1/projects/{project_id}/models", "viewer"),
    Route(
        "POST",
        "/v1/projects/{project_id}/models",
        "editor",
        lambda _w, _s: {"name": "m", "artifact_uri": "s3://bucket/own/model.tar.gz"},
    ),
    Route("POST", "/v1/projects/{project_id}/deployments", "editor", _deployment_body),
    Route("GET", "/v1/projects/{project_id}/deployments", "viewer"),
    Route("GET", "/v1/deployments/{deployment_id}", "viewer"),
    Route(
        "PATCH",
        "/v1/deployments/{deployment_id}",
        "editor",
        lambda _w, _s: {"desired_instances": 2},
    ),
    Route("DELETE", "/v1/deployments/{deployment_id}", "editor"),
    Route("POST", "/v1/deployments/{deployment_id}/metrics", "editor", _points),
    Route("GET", "/v1/deployments/{deployment_id}/metrics", "viewer"),
    Route("GET", "/v1/runs/{run_id}/metrics/series", "viewer"),
    Route("GET", "/v1/runs/{run_id}/metrics/latest", "viewer"),
    Route("GET", "/v1/deployments/{deployment_id}/metrics/series", "viewer"),
    Route("GET", "/v1/deployments/{deployment_id}/metrics/latest", "viewer"),
    Route("GET", "/v1/runs/{run_id}/logs", "viewer"),
    Route("GET", "/v1/projects/{project_id}/costs", "viewer"),
    Route("GET", "/v1/deployments/{deployment_id}/decisions", "viewer"),
    Route("GET", "/v1/deployments/{deployment_id}/decisions/latest", "viewer"),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/what-if",
        "viewer",
        lambda _w, _s: {"instances": [1, 2]},
    ),
    Route(
        "GET", "/v1/projects/{project_id}/recommendations/training?entrypoint=train.py", "viewer"
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/invocations",
        "editor",
        lambda _w, _s: {"user": 1},
    ),
    Route(
        "POST",
        "/v1/deployments/{deployment_id}/v1/models/{model_name}:predict",
        "editor",
        lambda _w, _s: {"instances": [{"user": 1}]},
    ),
    Route(
        "POST",
        "/v1/models/{model_version_id}/evaluations",
        "editor",
        lambda _w, _s: recommender_evaluation(),
    ),
    Route("GET", "/v1/models/{model_version_id}/evaluations", "viewer"),
    Route("GET", "/v1/evaluations/{evaluation_id}", "viewer"),
    Route("POST", "/v1/evaluations/{evaluation_id}/stop", "editor"),
    Route("GET", "/v1/evaluations/{evaluation_id}/logs", "viewer"),
    Route("GET", "/v1/evaluations/{evaluation_id}/metrics", "viewer"),
    Route("GET", "/v1/evaluations/{evaluation_id}/metrics/series", "viewer"),
    Route("GET", "/v1/evaluations/{evaluation_id}/metrics/latest", "viewer"),
    Route("GET", ALIAS, "viewer"),
    Route("PUT", ALIAS, "editor", lambda _w, _s: {"version": 1}),
    Route("DELETE", ALIAS, "editor"),
]

WEBHOOKS = "/v1/projects/{project_id}/webhooks"
ROUTES += [
    Route("GET", "/v1/projects/{project_id}/events", "viewer"),
    Route("GET", "/v1/projects/{project_id}/events/stream", "viewer"),
    Route("GET", "/v1/runs/{run_id}/logs/stream", "viewer"),
    Route(
        "POST",
        WEBHOOKS,
        "editor",
        lambda _w, _s: {"url": "https://hooks.example.com/x", "events": ["run.*"]},
    ),
    Route("GET", WEBHOOKS, "viewer"),
    Route("GET", WEBHOOKS + "/{webhook_id}", "viewer"),
    Route("DELETE", WEBHOOKS + "/{webhook_id}", "editor"),
    Route("POST", WEBHOOKS + "/{webhook_id}/rotate-secret", "editor"),
    Route("GET", WEBHOOKS + "/{webhook_id}/deliveries", "viewer"),
    Route("POST", WEBHOOKS + "/{webhook_id}/deliveries/{delivery_id}/redeliver", "editor"),
]

# /metrics takes no API key: loopback callers (the test client counts as one) or its token.
UNAUTHENTICATED = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Streams end at once here, so an allowed stream request returns."""
    short = settings.observability.model_copy(update={"stream_max_s": 0.2})
    return settings.model_copy(update={"observability": short})


def _cases() -> list[Any]:
    cases = []
    for route in ROUTES:
        for principal in PRINCIPALS:
            for target in ("own", "other") if route.scoped else ("own",):
                cases.append(
                    pytest.param(
                        route,
                        principal,
                        target,
                        id=f"{route.method} {route.path} {principal} {target}",
                    )
                )
    return cases


def _expect_allowed(route: Route, principal: str, target: str) -> bool | int:
    """True when allowed, else the status the request must get."""
    if principal == "none":
        return 401
    if principal == "admin" or route.need == "any":
        return True
    if route.need == "admin":
        return 403
    if target == "other":
        return 404
    return True if RANK[principal] >= RANK[route.need] else 403


def _fill(route: Route, world: World, side: Side) -> str:
    member = world.keys["viewer"].id if side is world.own else world.other_owner.id
    return route.path.format(
        project_id=side.project.id,
        principal_id=member,
        run_id=side.run.id,
        model_version_id=side.model.id,
        deployment_id=side.deployment.id,
        key_id=world.spare_key.id,
        model_name="default",
        bundle_id=side.bundle.id,
        webhook_id=side.webhook.id,
        delivery_id=side.delivery.id,
        evaluation_id=side.evaluation.id,
        name=side.model.name,
        alias="production",
    )


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.mark.parametrize(("route", "principal", "target"), _cases())
def test_authorization(
    client: TestClient, world: World, route: Route, principal: str, target: str
) -> None:
    side = world.own if target == "own" else world.other
    headers = {} if principal == "none" else world.keys[principal].headers
    body = route.body(world, side) if route.body else None
    if route.gzip is not None:
        headers = {**headers, "Content-Type": "application/gzip"}
        response = client.request(
            route.method, _fill(route, world, side), content=route.gzip, headers=headers
        )
    else:
        url = _fill(route, world, side)
        response = client.request(route.method, url, json=body, headers=headers)
    expected = _expect_allowed(route, principal, target)
    # 502/503 are the compute backend's answers (the test world has no endpoints running).
    assert response.status_code != 500, response.text
    if expected is True:
        assert response.status_code not in DENIED, response.text
    else:
        assert response.status_code == expected, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_matrix_covers_every_route(settings: Settings) -> None:
    spec = create_app(settings).openapi()
    served = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    covered = {(r.method, r.path.split("?")[0]) for r in ROUTES} | UNAUTHENTICATED
    assert served == covered, f"routes without a matrix entry: {sorted(served - covered)}"


def test_bad_and_revoked_keys_are_401(client: TestClient, world: World) -> None:
    url = f"/v1/projects/{world.own.project.id}"
    for header in ("Bearer sk_nope", "Basic abc", "Bearer ", "sk_abc"):
        r = client.get(url, headers={"Authorization": header})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    viewer = world.keys["viewer"]
    admin = world.keys["admin"]
    assert client.get(url, headers=viewer.headers).status_code == 200
    assert client.delete(f"/v1/api-keys/{viewer.id}", headers=admin.headers).status_code == 204
    assert client.get(url, headers=viewer.headers).status_code == 401
