"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Float, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import JSON, TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes everywhere (SQLite keeps no zone, so it is restored)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")

# SQLite only auto-increments INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class MetricFloat(TypeDecorator[float]):
    """A float that may be NaN or ±Infinity. NaN is stored as NULL (SQLite's REAL cannot hold
    it), so SQL aggregates skip it by themselves; infinities are stored as they are."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:  # noqa: ARG002
        if value is None or math.isnan(value):
            return None
        return value

    def process_result_value(self, value: float | None, dialect: Dialect) -> float:  # noqa: ARG002
        return math.nan if value is None else float(value)
