"""The ASGI application: ``app.main:app``, built by ``create_app()``."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from app.api import handlers, openapi
from app.api.fast_invoke import InvocationFastPath
from app.api.inputs import RejectUnstorableText
from app.api.limits import BodySizeLimit
from app.api.routes import (
    aliases,
    api_keys,
    bundles,
    deployments,
    docs,
    evaluations,
    events,
    health,
    metrics,
    models,
    observability,
    optimizer,
    projects,
    run_tracking,
    runs,
    serving,
    webhooks,
)
from app.db import build_engine
from app.observability import logs
from app.observability.http import RequestContext
from app.settings import Settings, get_settings
from app.ui import install as install_console

DESCRIPTION = """
Stratus tracks, trains, deploys and right-sizes models behind one API.

Authenticate with `Authorization: Bearer <api key>` (on this page: **Authorize**). Errors
are `application/problem+json`. Lists are cursor-paged: pass `next_cursor` back as `cursor`.
POSTs that create accept an `Idempotency-Key` header; a retry with the same key and body
replays the first response.
State changes are recorded as events: list them, stream them (server-sent events) or have
them POSTed to signed webhooks.
"""


def create_app(
    settings: Settings | None = None, session_factory: sessionmaker[Session] | None = None
) -> FastAPI:
    """Build the app. Tests pass their own settings and session factory."""
    settings = settings or get_settings()
    if session_factory is None:
        engine = build_engine(settings.effective_database_url)
        session_factory = sessionmaker(bind=engine, expire_on_commit=False)
    logs.configure(settings.log_level, settings.observability.json_logs)

    app = FastAPI(
        title="Stratus",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    handlers.install(app)
    openapi.install(app)
    docs.install(app)
    for module in (
        health,
        api_keys,
        projects,
        runs,
        run_tracking,
        bundles,
        models,
        evaluations,
        aliases,
        deployments,
        metrics,
        serving,
        optimizer,
        events,
        webhooks,
        observability,
    ):
        app.include_router(module.router)
    install_console(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.api.max_body_bytes,
        overrides=[(bundles.UPLOAD_PATH, settings.artifacts.bundle_max_bytes)],
    )
    app.add_middleware(RejectUnstorableText)
    app.add_middleware(RequestContext)
    # Outermost: it answers only requests those three would pass as they are, does what they
    # do for such a request (request id, metrics), and hands every other one to them.
    app.add_middleware(InvocationFastPath, settings=settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app.main:app` is built on first access, so importing this module has no side effects.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
