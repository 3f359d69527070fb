"""Request-scoped dependencies: the unit of work, the principal, paging, idempotent writes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain.access import Principal
from app.domain.api_keys import service as api_keys
from app.domain.idempotency import service as idempotency
from app.domain.pagination import PageRequest
from app.domain.schemas import Page
from app.errors import AppError, Unauthorized
from app.observability import context as request_context
from app.settings import Settings

log = logging.getLogger("stratus.api")


# Plain lookups are async so they run on the event loop, not via a threadpool hop each.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


def get_session(factory: FactoryDep) -> Iterator[Session]:
    """One unit of work per request: committed before the response is sent. A refusal that
    has something to record about itself records it in a transaction of its own."""
    try:
        with unit_of_work(factory) as session:
            yield session
    except AppError as exc:
        if exc.after_rollback is not None:
            _record_refusal(factory, exc)
        raise


def _record_refusal(factory: sessionmaker[Session], exc: AppError) -> None:
    try:
        with unit_of_work(factory) as session:
            if exc.after_rollback is not None:
                exc.after_rollback(session)
    except Exception:  # the refusal is still answered as it was
        log.exception("recording a refused request's consequences failed")


# scope="function": the commit runs before the response goes out, so a failed commit is a 500,
# never a 2xx for a change that was not stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def bearer_secret(authorization: str | None) -> str:
    """The key from ``Authorization: Bearer <key>``; 401 when the header is missing or other."""
    if not authorization:
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    return secret.strip()


def _authenticate(factory: sessionmaker[Session], secret: str, pepper: str) -> Principal:
    with unit_of_work(factory) as session:
        principal = api_keys.authenticate(session, secret, pepper)
    if principal is None:
        raise Unauthorized("The API key is not valid or has been revoked.")
    return principal


async def get_principal(
    settings: SettingsDep,
    factory: FactoryDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; 401 when missing, unknown or revoked.

    A key seen in the last few seconds is answered from memory on the event loop; only a
    miss reads the database, in the threadpool.
    """
    secret = bearer_secret(authorization)
    principal = api_keys.cached_principal(secret, settings.key_pepper)
    if principal is None:
        principal = await run_in_threadpool(_authenticate, factory, secret, settings.key_pepper)
    request_context.set_principal(principal.id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_secret(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The presented key, unchecked (401 only when missing): for a route whose service
    authenticates it together with what it reads (the invocation path)."""
    return bearer_secret(authorization)


SecretDep = Annotated[str, Depends(get_secret)]


async def get_page(
    settings: SettingsDep,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Page size")] = None,
) -> PageRequest:
    size = limit or settings.api.page_size_default
    return PageRequest(cursor=cursor, limit=min(size, settings.api.page_size_max))


PageDep = Annotated[PageRequest, Depends(get_page)]


def page_of(items: list[Any], next_cursor: str | None) -> Page[Any]:
    return Page(items=items, next_cursor=next_cursor)


class IdempotentReplay(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised to answer a retried request with its stored first response."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__("replay")
        self.status = status
        self.body = body


@dataclass
class Write:
    """A creating request's unit of work; ``respond`` records the reply under its key."""

    session: Session
    principal: Principal
    claim: idempotency.Claim | None = None

    def respond(
        self,
        model: BaseModel | dict[str, Any],
        status_code: int = 201,
        *,
        replay: BaseModel | dict[str, Any] | None = None,
    ) -> JSONResponse:
        """Answer with ``model``; a retry under the same key gets ``replay`` (default: the
        same body), so a response holding a secret is never stored."""
        body = jsonable_encoder(model)
        if self.claim is not None:
            stored = body if replay is None else jsonable_encoder(replay)
            idempotency.complete(self.session, self.claim, status_code, stored)
        return JSONResponse(body, status_code=status_code)


async def raw_body(request: Request) -> bytes:
    return await request.body()


def _request_hash(body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries with the same key and body replay the first response.",
    ),
]


@contextmanager
def idempotent_write(
    session: Session,
    principal: Principal,
    factory: sessionmaker[Session],
    settings: Settings,
    idempotency_key: str | None,
    method: str,
    path: str,
    body: bytes,
) -> Iterator[Write]:
    """A creating request: optional Idempotency-Key claim, commit, and release on failure."""
    claim: idempotency.Claim | None = None
    if idempotency_key is not None:
        outcome = idempotency.begin(
            factory,
            principal.id,
            idempotency_key,
            method,
            path,
            _request_hash(body),
            ttl=timedelta(hours=settings.api.idempotency_ttl_hours),
            lease=timedelta(seconds=settings.api.idempotency_lease_seconds),
        )
        if isinstance(outcome, idempotency.Replay):
            raise IdempotentReplay(outcome.status, outcome.body)
        claim = outcome
    try:
        yield Write(session=session, principal=principal, claim=claim)
        session.commit()  # here, so a failed commit releases the claim below
    except BaseException:
        session.rollback()
        if claim is not None:
            idempotency.release(factory, claim)
        raise


def get_write(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    factory: FactoryDep,
    settings: SettingsDep,
    body: Annotated[bytes, Depends(raw_body)],
    idempotency_key: IdempotencyKey = None,
) -> Iterator[Write]:
    """The request's ``Write``: see ``idempotent_write``."""
    with idempotent_write(
        session,
        principal,
        factory,
        settings,
        idempotency_key,
        request.method,
        request.url.path,
        body,
    ) as write:
        yield write


WriteDep = Annotated[Write, Depends(get_write, scope="function")]


@dataclass(frozen=True)
class WriteCall:
    """A creating request whose whole unit of work runs in one threadpool call (``open``), for
    a hot route: its other dependencies then need no threadpool hop of their own."""

    principal: Principal
    factory: sessionmaker[Session]
    settings: Settings
    method: str
    path: str
    body: bytes

    @contextmanager
    def open(self, idempotency_key: str | None) -> Iterator[Write]:
        """``get_write`` as a context manager: commit before the response, as there."""
        with (
            unit_of_work(self.factory) as session,
            idempotent_write(
                session,
                self.principal,
                self.factory,
                self.settings,
                idempotency_key,
                self.method,
                self.path,
                self.body,
            ) as write,
        ):
            yield write


async def write_call(request: Request, authorization: str | None) -> WriteCall:
    """The authenticated caller and the body of a creating request (401 first, as
    ``get_principal``), for a dependency that stands in for ``WriteDep``."""
    state = request.app.state
    principal = await get_principal(state.settings, state.session_factory, authorization)
    return WriteCall(
        principal,
        state.session_factory,
        state.settings,
        request.method,
        request.url.path,
        await request.body(),
    )


def replay_response(exc: IdempotentReplay) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers={"Idempotent-Replayed": "true"})
