"""Liveness and readiness; the only routes without authentication."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import FactoryDep, SettingsDep
from app.broker import broker_reachable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Liveness: answers while the process serves requests; checks nothing else."""
    return {"status": "ok"}


def _database_ok(factory: FactoryDep) -> tuple[bool, str]:
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return False, type(exc).__name__


@router.get(
    "/readyz",
    summary="The database and the broker are reachable",
    description="200 when both answer; else 503 naming the dependencies that are down in "
    "`unavailable`, with `Retry-After`. Invocations to serving deployments may still work "
    "while the database is down (see `STRATUS_SERVING__STALE_ROUTE_MAX_S`).",
    responses={503: {"description": "A dependency is unreachable"}},
)
async def readyz(factory: FactoryDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: 200 when the database and the broker answer, 503 naming the one that does not."""
    db_ok, db_detail = await run_in_threadpool(_database_ok, factory)
    broker_ok, broker_detail = await run_in_threadpool(
        broker_reachable, settings.effective_broker_url
    )
    down = [name for name, ok in (("database", db_ok), ("broker", broker_ok)) if not ok]
    body = {
        "status": "unavailable" if down else "ok",
        "checks": {"database": db_detail, "broker": broker_detail},
        "unavailable": down,
    }
    if not down:
        return JSONResponse(body)
    headers = {"Retry-After": str(settings.serving.retry_after_s)}
    return JSONResponse(body, status_code=503, headers=headers)
