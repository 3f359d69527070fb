"""Tenant isolation, route by route: an editor of project B aims every operation of the app at
project A's objects. Each must answer 404 exactly as for an object that does not exist (never a
2xx, never a 403 that reveals the object, never a 500), leak none of A's ids into a response,
and leave every one of A's rows as it was.

Operations are enumerated from the app itself, so a route added later is covered as soon as its
path parameters are known to ``TARGETS`` (and its body to an OpenAPI example or ``BODIES``);
an unknown parameter or a body-taking route without an example fails ``test_every_operation_
can_be_aimed``. ``test_authorization_matrix.py`` checks roles within and across projects for a
listed set of routes; this suite checks what leaks or changes, for every route.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

import app.domain.models  # noqa: F401 - every table in Base.metadata
from app.db import Base
from app.domain.access import Role
from app.domain.aliases.models import ModelAlias
from app.main import create_app
from app.settings import Settings
from tests.bundles.archives import code_bundle
from tests.factories import (
    Key,
    make_bundle,
    make_decision,
    make_deployment,
    make_evaluation,
    make_key,
    make_model_version,
    make_project,
    make_run,
    make_webhook,
)
from tests.routes import Operation, operations


@dataclass(repr=False)
class Tenant:
    project: Any
    run: Any
    model: Any
    deployment: Any
    bundle: Any
    member: Key  # a key with a role on the project
    webhook: Any = None
    delivery: Any = None
    evaluation: Any = None

    def ids(self) -> list[str]:
        objects = (self.project, self.run, self.model, self.deployment, self.bundle)
        extra = (self.webhook, self.delivery, self.evaluation)
        return [str(o.id) for o in objects] + [str(o.id) for o in extra if o is not None]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Streams end at once here, so the control request on B's own project returns."""
    short = settings.observability.model_copy(update={"stream_max_s": 0.2})
    return settings.model_copy(update={"observability": short})


@dataclass(repr=False)
class Scene:
    victim: Tenant  # project A
    attacker: Tenant  # project B, reached with B's editor key
    attacker_key: Key


# Path parameter -> the object of a tenant it names. ``SCOPED`` parameters name an object of
# one project, so a stranger must get 404; key ids are global (and their routes admin-only).
TARGETS: dict[str, Callable[[Tenant], Any]] = {
    "project_id": lambda t: t.project.id,
    "run_id": lambda t: t.run.id,
    "model_version_id": lambda t: t.model.id,
    "deployment_id": lambda t: t.deployment.id,
    "bundle_id": lambda t: t.bundle.id,
    "principal_id": lambda t: t.member.id,
    "key_id": lambda t: t.member.id,
    "model_name": lambda _t: "default",
    "webhook_id": lambda t: t.webhook.id,
    "delivery_id": lambda t: t.delivery.id,
    "evaluation_id": lambda t: t.evaluation.id,
    "name": lambda _t: "model",  # a registered model's name (the factory's default)
    "alias": lambda _t: "production",
}
SCOPED = {
    "project_id",
    "run_id",
    "model_version_id",
    "deployment_id",
    "bundle_id",
    "webhook_id",
    "delivery_id",
    "evaluation_id",
}

# Required query parameters, by name.
QUERY = {"entrypoint": "train.py"}

# Bodies where the OpenAPI example does not fit (or there is none).
BODIES: dict[tuple[str, str], Callable[[Tenant], Any]] = {
    ("POST", "/v1/deployments/{deployment_id}/invocations"): lambda _t: {"user": 7},
    ("POST", "/v1/projects/{project_id}/deployments"): lambda t: {
        "name": "intruder",
        "model_version_id": str(t.model.id),
        "instance_type": "local",
    },
    ("POST", "/v1/api-keys"): lambda _t: {"name": "intruder"},
    ("POST", "/v1/projects"): lambda _t: {"name": "intruder-project"},
    ("POST", "/v1/projects/{project_id}/code-bundles"): lambda _t: code_bundle(),
}


def _tenant(db: Session, member: Key, role: Role, name: str) -> Tenant:
    project = make_project(db, (member, role), name=name)
    run = make_run(db, project, status="completed")
    model = make_model_version(db, project, source_run_id=run.id)
    deployment = make_deployment(db, project, model, status="in_service", current_instances=1)
    make_decision(db, deployment)
    bundle = make_bundle(db, project)
    webhook, delivery = make_webhook(db, project)
    evaluation = make_evaluation(db, model, status="completed", final_metrics={"ndcg_at_10": 0.5})
    db.add(
        ModelAlias(
            project_id=project.id,
            name=model.name,
            alias="production",
            model_version_id=model.id,
            requires={},
        )
    )
    return Tenant(project, run, model, deployment, bundle, member, webhook, delivery, evaluation)


@pytest.fixture
def scene(db: Session, client: TestClient) -> Scene:
    owner_a, editor_b = make_key(db, name="owner-a"), make_key(db, name="editor-b")
    victim = _tenant(db, owner_a, Role.OWNER, "tenant-a")
    attacker = _tenant(db, editor_b, Role.EDITOR, "tenant-b")
    db.commit()
    points = {"points": [{"name": "latency_p95_ms", "value": 40.0, "step": 1}]}
    for tenant in (victim, attacker):
        for url in (
            f"/v1/runs/{tenant.run.id}/metrics",
            f"/v1/deployments/{tenant.deployment.id}/metrics",
        ):
            r = client.post(url, json=points, headers=tenant.member.headers)
            assert r.status_code == 201, r.text
    return Scene(victim, attacker, editor_b)


def _ghost(member: Key) -> Tenant:
    """A tenant whose objects do not exist."""
    project = SimpleNamespace(id=uuid.uuid4(), name="ghost")
    others = (SimpleNamespace(id=uuid.uuid4()) for _ in range(7))
    run, model, deployment, bundle, webhook, delivery, evaluation = others
    return Tenant(project, run, model, deployment, bundle, member, webhook, delivery, evaluation)


# --- filling a request ---------------------------------------------------------------------


@cache
def _app_and_spec() -> tuple[FastAPI, dict[str, Any]]:
    app = create_app(Settings(env="test", key_pepper="x" * 20))
    return app, app.openapi()


def _spec() -> dict[str, Any]:
    return _app_and_spec()[1]


def _example(spec: dict[str, Any], op: Operation) -> Any:
    """The first example of the operation's JSON body schema, or None."""
    body = spec["paths"][op.path][op.method.lower()].get("requestBody")
    if not body:
        return None
    media = body["content"].get("application/json", {})
    if "example" in media:
        return media["example"]
    schema = media.get("schema", {})
    ref = schema.get("$ref")
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    examples = schema.get("examples") or []
    return examples[0] if examples else None


def _needs(op: Operation, spec: dict[str, Any]) -> tuple[list[str], list[str], bool]:
    """The operation's path parameters, required query parameters and whether it has a body."""
    item = spec["paths"][op.path][op.method.lower()]
    params = item.get("parameters", [])
    path = re.findall(r"{(\w+)}", op.path)
    query = [p["name"] for p in params if p["in"] == "query" and p.get("required")]
    return path, query, "requestBody" in item


def _request(
    op: Operation, spec: dict[str, Any], tenant: Tenant, body_tenant: Tenant
) -> dict[str, Any]:
    path_params, query, has_body = _needs(op, spec)
    url = op.path.format(**{p: TARGETS[p](tenant) for p in path_params})
    kwargs: dict[str, Any] = {"params": {q: QUERY[q] for q in query}}
    if has_body:
        make = BODIES.get((op.method, op.path))
        body = make(body_tenant) if make else _example(spec, op)
        if isinstance(body, bytes):  # an upload: a gzip'd tarball, not JSON
            kwargs["content"] = body
            kwargs["headers"] = {"Content-Type": "application/gzip"}
        else:
            kwargs["json"] = body
    return {"method": op.method, "url": url, **kwargs}


def _send(client: TestClient, request: dict[str, Any], key: Key) -> Any:
    headers = {**request.pop("headers", {}), **key.headers}
    return client.request(**request, headers=headers)


def _cases() -> list[Any]:
    return [pytest.param(op, id=f"{op.method} {op.path}") for op in operations(_app_and_spec()[0])]


# --- what A has, before and after ----------------------------------------------------------


def _rows(db: Session, victim: Tenant) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that belongs to A, by table: rows with A's project_id, A's project itself,
    rows about A's run or deployment (subject_id), and outbox messages that name A's objects."""
    ids = {victim.project.id, victim.run.id, victim.deployment.id, victim.model.id}
    found: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        assert isinstance(table, Table)
        columns = table.c
        if table.name == "projects":
            stmt = select(table).where(columns.id == victim.project.id)
        elif "project_id" in columns:
            stmt = select(table).where(columns.project_id == victim.project.id)
        elif "subject_id" in columns:
            stmt = select(table).where(columns.subject_id.in_(ids))
        else:
            continue
        found[table.name] = sorted(
            (tuple(row) for row in db.execute(stmt).all()), key=lambda r: str(r)
        )
    outbox = db.execute(text("SELECT payload::text FROM outbox")).scalars().all()
    found["outbox"] = sorted(p for p in outbox if any(str(i) in p for i in ids))
    return found


def _leaks(response: Any, victim: Tenant) -> list[str]:
    """A's ids or name in a response, other than those the request itself sent."""
    sent = str(response.request.url) + response.request.content.decode(errors="replace")
    return [s for s in [*victim.ids(), victim.project.name] if s in response.text and s not in sent]


# --- the suite -----------------------------------------------------------------------------


def test_every_operation_can_be_aimed() -> None:
    spec = _spec()
    problems = []
    for op in operations(_app_and_spec()[0]):
        path_params, query, has_body = _needs(op, spec)
        where = f"{op.method} {op.path}"
        problems += [f"{where}: add {p!r} to TARGETS" for p in path_params if p not in TARGETS]
        problems += [f"{where}: add {q!r} to QUERY" for q in query if q not in QUERY]
        if has_body and (op.method, op.path) not in BODIES and _example(spec, op) is None:
            problems.append(f"{where}: give its body an OpenAPI example or a BODIES entry")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("op", _cases())
def test_operation_cannot_reach_another_project(
    client: TestClient, db: Session, scene: Scene, op: Operation
) -> None:
    spec = _spec()
    path_params, _query, _body = _needs(op, spec)
    key = scene.attacker_key
    before = _rows(db, scene.victim)

    aimed = _send(client, _request(op, spec, scene.victim, scene.victim), key)

    assert aimed.status_code != 500, aimed.text
    assert not _leaks(aimed, scene.victim), aimed.text
    if path_params:
        # A's objects answer exactly as objects that do not exist.
        ghost = _ghost(scene.victim.member)
        missing = _send(client, _request(op, spec, ghost, scene.victim), key)
        assert _same_answer(aimed, missing), f"A's: {aimed.text}\nnone: {missing.text}"
    if SCOPED & set(path_params):
        assert aimed.status_code == 404, aimed.text
        assert aimed.headers["content-type"] == "application/problem+json"
        # The same request on the key's own project is not a 404: the fill reaches real objects.
        own = _send(client, _request(op, spec, scene.attacker, scene.attacker), key)
        assert own.status_code != 404, f"control on own project: {own.text}"
    else:
        # Not about one project's object (admin routes, the caller's own lists, health).
        assert aimed.status_code in {200, 201, 204, 403, 404, 409, 422}, aimed.text

    assert _rows(db, scene.victim) == before, "project A's rows changed"


def _same_answer(first: Any, second: Any) -> bool:
    """Same status and, for errors, the same problem code: nothing tells the two apart."""
    if first.status_code != second.status_code:
        return False
    if first.status_code < 400:
        return True
    return bool(first.json().get("code") == second.json().get("code"))


def test_lists_show_nothing_of_another_project(client: TestClient, scene: Scene) -> None:
    headers = scene.attacker_key.headers
    for url in ("/v1/projects", f"/v1/projects/{scene.attacker.project.id}/runs"):
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        assert not _leaks(r, scene.victim), r.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/projects/{b}/deployments",
            lambda a: {"name": "borrowed", "model_version_id": str(a.model.id)},
        ),
    ],
)
def test_own_project_requests_cannot_reference_another_projects_objects(
    client: TestClient, db: Session, scene: Scene, path: str, body: Callable[[Tenant], Any]
) -> None:
    """A body naming A's object, sent to B's own collection, is refused like a missing one."""
    before = _rows(db, scene.victim)
    url = path.format(b=scene.attacker.project.id)
    r = client.post(url, json=body(scene.victim), headers=scene.attacker_key.headers)
    assert r.status_code in (404, 422), r.text
    assert not _leaks(r, scene.victim), r.text
    assert _rows(db, scene.victim) == before
