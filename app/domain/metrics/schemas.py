"""Metric point request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, NotRequired

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, with_config
from typing_extensions import TypedDict

from app.domain.schemas import ReadModel

METRIC_NAME = r"^[A-Za-z0-9_.\-/:]{1,128}$"
BATCH_ID = r"^[A-Za-z0-9_.\-:]{1,128}$"
MAX_BATCH = 10_000
MAX_STEP = 2**63 - 1  # BIGINT
MAX_BUCKETS = 1000
MAX_SERIES = 50
# JSON has no NaN or Infinity: a batch that allows them spells them as these strings.
NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
# How a stored value is shown: JSON has no NaN or infinities, so those go out as strings.
NUMBER_OR_NON_FINITE: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}


# Points are TypedDicts, not models: a 10,000-point batch validates to plain dicts without
# building (and then unpacking) 10,000 model instances, about three times faster.
@with_config(
    ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "loss", "value": 0.083, "step": 120, "timestamp": "2026-11-27T10:15:00Z"}
            ]
        },
    )
)
class MetricPointIn(TypedDict):
    name: Annotated[str, Field(pattern=METRIC_NAME, description="The metric's name.")]
    # strict: JSON's own types only (no "0.5" or true for a number, no 5 for a timestamp), checked
    # in pydantic's core at no cost per point.
    value: Annotated[
        Annotated[float, Field(allow_inf_nan=False, strict=True)] | NonFinite,
        Field(
            description='Its value: a finite number, or "NaN", "Infinity" or "-Infinity" in a '
            'batch with "allow_non_finite": true.'
        ),
    ]
    step: NotRequired[
        Annotated[
            int | None,
            Field(ge=0, le=MAX_STEP, strict=True, description="Training step, if it has one."),
        ]
    ]
    # Not UtcDatetime: a Python validator per point costs a third of the parse. Naive and
    # offset times are made UTC when the batch is stored (``points.py``).
    timestamp: NotRequired[
        Annotated[
            datetime | None,
            Field(strict=True, description="Default: when received; naive = UTC"),
        ]
    ]


@with_config(
    ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "trainer-7-000042",
                    "points": [
                        {"name": "loss", "value": 0.083, "step": 120},
                        {"name": "latency_p95_ms", "value": 41.5},
                    ],
                }
            ]
        },
    )
)
class MetricBatch(TypedDict):
    # The 10,000 cap is checked after parsing so that it answers 413, not 422.
    points: Annotated[
        list[MetricPointIn],
        Field(
            min_length=1,
            json_schema_extra={"maxItems": MAX_BATCH},
            description="The points, up to 10,000 per batch.",
        ),
    ]
    allow_non_finite: NotRequired[
        Annotated[
            bool,
            Field(
                strict=True,
                description='Accept "NaN", "Infinity" and "-Infinity" as values (a diverged '
                "loss is information): stored and shown as such, left out of aggregates and "
                "the optimizer",
            ),
        ]
    ]
    batch_id: NotRequired[
        Annotated[
            str,
            Field(
                pattern=BATCH_ID,
                description="Names this batch for its subject: a retry with the same "
                "batch_id stores nothing and answers with the first attempt's count.",
            ),
        ]
    ]


class MetricsAccepted(BaseModel):
    accepted: int = Field(description="Points stored from this batch.")


class MetricPointRead(ReadModel):
    # NaN and the infinities are shown as the strings a batch sends them as.
    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="strings")

    name: str = Field(description="The metric's name.")
    value: Annotated[float, WithJsonSchema(NUMBER_OR_NON_FINITE)] = Field(
        description="Its value; `NaN`, `Infinity` or `-Infinity` (as strings) where the batch "
        "allowed non-finite values."
    )
    step: int | None = Field(description="Training step, when given.")
    timestamp: datetime = Field(description="When it was measured (UTC).")


class LatestPoints(BaseModel):
    """The newest point (by timestamp, then the last received) of every name of a subject."""

    items: list[MetricPointRead] = Field(description="The latest point of each metric.")


class SeriesBucket(BaseModel):
    start: datetime = Field(description="Start of the bucket (UTC).")
    count: int = Field(description="Points in the bucket.")
    min: float = Field(description="Smallest value in the bucket.")
    max: float = Field(description="Largest value in the bucket.")
    mean: float = Field(description="Mean of the bucket's values.")
    last: float = Field(description="Value of the bucket's latest point (by timestamp)")


class Series(BaseModel):
    """One metric in the shared time buckets; empty buckets are omitted."""

    name: str = Field(description="The metric's name.")
    buckets: list[SeriesBucket] = Field(description="Its buckets, oldest first.")


class SeriesSet(BaseModel):
    """Metrics downsampled to ``buckets`` equal time buckets over one shared range."""

    since: datetime | None = Field(description="Start of the first bucket")
    until: datetime | None = Field(description="End of the last bucket")
    bucket_seconds: float = Field(description="Width of every bucket.")
    items: list[Series] = Field(description="One series per metric name.")


class WindowStats(NamedTuple):
    """What the optimizer reads of one metric over a window; mean and p95 are None if empty."""

    points: int
    mean: float | None
    p95: float | None
