"""Schemas shared by every resource: pages and the base read model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

T = TypeVar("T")


class ReadModel(BaseModel):
    """Base of response models, built from ORM objects at the service boundary."""

    model_config = ConfigDict(from_attributes=True)


class WriteModel(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. year 1 with a positive offset
        raise ValueError("is outside the supported range of timestamps") from exc


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
