"""Requests to deployed models: the caller's route, then one call to the backend.

The route (may this key invoke this deployment, and where does it serve) comes from the
process's route cache (``route_cache``); only a miss reads the database, in a short
transaction that ends before the model is called. The model is called on the event loop when
the backend can (local replicas, over pooled connections), else in a thread. While the
database is unreachable, a route confirmed within ``stale_route_max_s`` keeps serving.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, TypeGuard

from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.backends.base import AsyncInvoker, BackendError, Invocation, ModelError, NotFoundError
from app.db import UNREACHABLE, unit_of_work, unreachable
from app.domain.access import Principal
from app.domain.api_keys import service as api_keys
from app.domain.api_keys.cache import principals
from app.domain.backend_calls import backend_named, http_error
from app.domain.deployments import service
from app.domain.deployments.route_cache import RouteKey, Target, routes
from app.errors import (
    AppError,
    BadGateway,
    DatabaseUnavailable,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
)
from app.settings import Settings

log = logging.getLogger("stratus.serving")
INVALID_KEY = "The API key is not valid or has been revoked."
# A key revoked through this process loses its routes at once, fallback included.
principals.on_forget(routes.forget_key)


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


def cached_route(settings: Settings, secret: str, deployment_id: uuid.UUID) -> Target | None:
    """The caller's route from memory alone (no I/O): a key authenticated within the principal
    cache's TTL and a route confirmed within ``route_ttl_s``; None when the database decides."""
    key_hash = api_keys.presented_hash(secret, settings.key_pepper)
    if key_hash is None:
        raise Unauthorized(INVALID_KEY)
    if not api_keys.recently_authenticated(key_hash):
        return None
    return routes.fresh((key_hash, deployment_id), settings.serving.route_ttl_s)


async def route(
    settings: Settings, factory: sessionmaker[Session], secret: str, deployment_id: uuid.UUID
) -> Target:
    """Where the caller's request goes: 401/403/404/409 exactly as the database would say."""
    target = cached_route(settings, secret, deployment_id)
    if target is not None:
        return target
    key: RouteKey = (api_keys.hash_secret(secret, settings.key_pepper), deployment_id)
    return await to_thread.run_sync(_confirm, settings, factory, secret, key)


def _confirm(
    settings: Settings, factory: sessionmaker[Session], secret: str, key: RouteKey
) -> Target:
    """The route as the database has it now; the last known one while it is unreachable."""
    if routes.database_backing_off():
        return _last_known(settings, key, None)
    try:
        with unit_of_work(factory) as session:
            principal = api_keys.authenticate(session, secret, settings.key_pepper)
            if principal is None:
                raise Unauthorized(INVALID_KEY)
            target = resolve(session, principal, key[1])
    except AppError:
        routes.forget(key)
        raise
    except UNREACHABLE as error:
        if not unreachable(error):
            raise
        routes.database_failed()
        return _last_known(settings, key, error)
    routes.put(key, target)
    return target


def _last_known(settings: Settings, key: RouteKey, cause: Exception | None) -> Target:
    target = routes.stale(key, settings.serving.stale_route_max_s)
    if target is None:
        raise DatabaseUnavailable(
            "The database is unreachable and this deployment has no recent route here.",
            headers={"Retry-After": str(settings.serving.retry_after_s)},
        ) from cause
    if cause is not None:
        log.warning("database unreachable (%s): serving from the last known route", cause)
    return target


async def invoke(target: Target, body: bytes, content_type: str) -> Answer:
    """Send ``body`` to the model; its 4xx answers are the caller's, as the model gave them."""
    backend = backend_named(target.backend)
    try:
        if _is_async(backend):
            result: Invocation = await backend.invoke_async(target.endpoint, body, content_type)
        else:
            result = await to_thread.run_sync(backend.invoke, target.endpoint, body, content_type)
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


def _is_async(backend: object) -> TypeGuard[AsyncInvoker]:
    # A plain attribute lookup: isinstance() on a runtime Protocol costs more than the rest of
    # a cached invocation's own work.
    return callable(getattr(backend, "invoke_async", None))


async def serve(
    settings: Settings,
    factory: sessionmaker[Session],
    secret: str,
    deployment_id: uuid.UUID,
    body: bytes,
    content_type: str,
) -> Answer:
    """One invocation: the caller's route, then the model's answer as is."""
    target = await route(settings, factory, secret, deployment_id)
    return await invoke(target, body, content_type)


async def predict(
    settings: Settings,
    factory: sessionmaker[Session],
    secret: str,
    deployment_id: uuid.UUID,
    instances: list[Any],
) -> dict[str, Any]:
    """TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""
    payload = json.dumps({"instances": instances}).encode()
    answer = await serve(settings, factory, secret, deployment_id, payload, "application/json")
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
