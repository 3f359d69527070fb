"""Metric points of runs and deployments."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import StringConstraints, TypeAdapter, ValidationError

from app.api.deps import (
    IdempotencyKey,
    PageDep,
    PrincipalDep,
    SessionDep,
    WriteCall,
    write_call,
)
from app.api.openapi import body_from_bytes
from app.domain.metrics import limits, service
from app.domain.metrics.schemas import (
    MAX_BUCKETS,
    MAX_SERIES,
    METRIC_NAME,
    LatestPoints,
    MetricBatch,
    MetricPointRead,
    MetricsAccepted,
    SeriesSet,
)
from app.domain.metrics.service import SubjectType
from app.domain.schemas import Page, UtcDatetime
from app.errors import problem_responses

router = APIRouter(tags=["metrics"])

NameFilter = Annotated[str | None, Query(pattern=METRIC_NAME, description="Only this metric")]
Names = Annotated[
    list[Annotated[str, StringConstraints(pattern=METRIC_NAME)]] | None,
    Query(max_length=MAX_SERIES, description="These metrics (repeat it); default: all"),
]
Buckets = Annotated[int, Query(ge=1, le=MAX_BUCKETS, description="Number of time buckets")]
Since = Annotated[
    UtcDatetime | None, Query(description="Points at or after this time (naive = UTC)")
]
Until = Annotated[UtcDatetime | None, Query(description="Points before this time (naive = UTC)")]
INGEST_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 429)
HISTORY_ERRORS = problem_responses(400, 401, 404, 422)


BATCH = TypeAdapter(MetricBatch)
# The body is parsed straight from its bytes by pydantic (one pass, no intermediate dicts from
# json.loads): at 10,000 points a request, parsing is most of the API's work.
BATCH_BODY = body_from_bytes("MetricBatch", BATCH)


@dataclass(frozen=True)
class Admitted:
    """An ingest request that passed everything but its budget and its subject."""

    call: WriteCall
    batch: MetricBatch


async def admitted_batch(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Admitted:
    """The caller (401), then the batch parsed (422) and within the size cap (413).

    One dependency on the event loop: each further one costs more than parsing a small
    batch, and parsing holds the GIL whichever thread does it.
    """
    call = await write_call(request, authorization)
    try:
        batch = BATCH.validate_json(call.body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    service.check_batch_size(batch)
    return Admitted(call, batch)


AdmittedDep = Annotated[Admitted, Depends(admitted_batch)]


def _ingest(
    admitted: Admitted,
    idempotency_key: str | None,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
) -> JSONResponse:
    """Everything an ingest does with I/O, in one threadpool call: the key's ingest budget,
    then the unit of work (Idempotency-Key claim, store, commit)."""
    call, batch = admitted.call, admitted.batch
    limits.charge(call.settings, call.principal.id, len(batch["points"]))
    with call.open(idempotency_key) as write:
        accepted, replayed = service.ingest(
            write.session, write.principal, subject_type, subject_id, batch
        )
        response = write.respond(accepted)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@dataclass(frozen=True)
class Subject:
    """What metric points belong to, as the API names it."""

    type: SubjectType
    param: str  # the path parameter holding its id
    prefix: str
    ingest: bool  # whether clients send its points (an evaluation's are scraped from its log)


SUBJECTS = (
    Subject("run", "run_id", "/v1/runs", ingest=True),
    Subject("deployment", "deployment_id", "/v1/deployments", ingest=True),
    Subject("evaluation", "evaluation_id", "/v1/evaluations", ingest=False),
)


def _add_routes(subject: Subject) -> None:
    """The metric routes of one subject type: ingest, history, series and latest."""
    kind = subject.type
    subject_id_param = Path(alias=subject.param, description=f"The {kind}'s id.")
    SubjectId = Annotated[uuid.UUID, subject_id_param]  # noqa: N806 - a type alias
    base = f"{subject.prefix}/{{{subject.param}}}/metrics"

    async def ingest(
        subject_id: SubjectId, admitted: AdmittedDep, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        """Store a batch of up to 10,000 points (all or nothing; once per batch_id)."""
        return await run_in_threadpool(_ingest, admitted, idempotency_key, kind, subject_id)

    def history(
        subject_id: SubjectId,
        session: SessionDep,
        principal: PrincipalDep,
        page: PageDep,
        name: NameFilter = None,
        since: Since = None,
        until: Until = None,
    ) -> Page[MetricPointRead]:
        items, cursor = service.history(
            session, principal, kind, subject_id, page, name, since, until
        )
        return Page(items=items, next_cursor=cursor)

    def series(
        subject_id: SubjectId,
        session: SessionDep,
        principal: PrincipalDep,
        name: Names = None,
        buckets: Buckets = 100,
        since: Since = None,
        until: Until = None,
    ) -> SeriesSet:
        return service.series(session, principal, kind, subject_id, name, buckets, since, until)

    def latest(subject_id: SubjectId, session: SessionDep, principal: PrincipalDep) -> LatestPoints:
        return service.latest(session, principal, kind, subject_id)

    if subject.ingest:
        router.add_api_route(
            base,
            ingest,
            methods=["POST"],
            name=f"ingest_{kind}_metrics",
            status_code=201,
            response_model=MetricsAccepted,
            responses=INGEST_ERRORS,
            openapi_extra=BATCH_BODY,
        )
    router.add_api_route(
        base,
        history,
        methods=["GET"],
        name=f"{kind}_metric_history",
        responses=HISTORY_ERRORS,
        description=f"The {kind}'s points, oldest first by timestamp (ties in the order received).",
    )
    router.add_api_route(
        f"{base}/series",
        series,
        methods=["GET"],
        name=f"{kind}_metric_series",
        responses=HISTORY_ERRORS,
        description=f"The {kind}'s metrics downsampled to time buckets (count, min, max, mean, "
        "last).",
    )
    router.add_api_route(
        f"{base}/latest",
        latest,
        methods=["GET"],
        name=f"{kind}_latest_metrics",
        responses=problem_responses(401, 404),
        description=f"The newest point (by timestamp) of each of the {kind}'s metrics.",
    )


for _subject in SUBJECTS:
    _add_routes(_subject)
