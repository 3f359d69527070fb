"""Schemas shared by every resource: pages and the base read model."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

T = TypeVar("T")


class ReadModel(BaseModel):
    """Base of response models, built from ORM objects at the service boundary."""

    model_config = ConfigDict(from_attributes=True)


def storable_text(value: str) -> str:
    """``value``, unless it holds what a database text column cannot store (NUL, lone
    surrogates)."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL (\\u0000) characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "string_unicode", "must be valid Unicode (no lone surrogates)"
            ) from None
    return value


def _no_bool_or_text(value: Any) -> Any:
    # A JSON integer may be written 3.0 (JSON Schema agrees), so ints stay lax about integral
    # floats; only true/false and strings are refused.
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


_STRICT_SCALARS = frozenset({"float", "bool", "str"})
# Keys of a core schema that hold data, not nested schemas.
_NOT_SCHEMAS = frozenset({"metadata", "serialization", "default", "ref", "expected", "examples"})


def _harden(node: Any) -> Any:
    """A copy of core schema ``node`` whose numbers, booleans and strings are strict (JSON's
    own types only: no bool->number, string->number or number->string coercion) and whose
    strings are storable. UUIDs, datetimes, enums and literals keep parsing from strings."""
    if isinstance(node, list):
        return [_harden(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: value if key in _NOT_SCHEMAS else _harden(value) for key, value in node.items()}
    kind = out.get("type")
    if kind == "int":
        return core_schema.no_info_before_validator_function(_no_bool_or_text, out)
    if kind in _STRICT_SCALARS:
        out["strict"] = True
        if kind == "str":
            return core_schema.no_info_after_validator_function(storable_text, out)
    return out


class WriteModel(BaseModel):
    """Base of request bodies, strict about what it stores:

    - unknown fields are an error, not silently dropped;
    - numbers, booleans and strings take only their own JSON type (``false`` is not 0,
      ``"5"`` is not 5, ``5`` is not ``"5"``); an integer is still a valid float, and an
      integral float (``3.0``) a valid integer, as in JSON Schema;
    - floats are finite (no NaN or Infinity);
    - strings, dict keys included, hold no NUL or lone surrogate.

    A model nested in a body must be a ``WriteModel`` too: the rules apply per model class.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema: CoreSchema = _harden(handler(source))
        return schema


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T] = Field(description="This page's items.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. year 1 with a positive offset
        raise ValueError("is outside the supported range of timestamps") from exc


_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def iso_only(value: Any) -> Any:
    """Refuses what pydantic would otherwise read as a datetime but is not an ISO 8601 date and
    time: numbers (Unix times), numeric strings and bare dates."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and not _ISO_DATETIME.match(value)
    ):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z"
        )
    return value


# Naive values are taken as UTC (documented), so this is laxer than RFC 3339 there only.
UtcDatetime = Annotated[datetime, BeforeValidator(iso_only), AfterValidator(as_utc)]
