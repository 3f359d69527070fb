"""Keyset (cursor) pagination over a monotonically ordered id column."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.errors import BadRequest

R = TypeVar("R")


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts and how long it is."""

    cursor: str | None = None
    limit: int = 50


def encode_cursor(value: uuid.UUID | int) -> str:
    """An opaque cursor for the last id of a page."""
    raw = f"{'u' if isinstance(value, uuid.UUID) else 'i'}:{value}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_BIGINT = 2**63


def decode_cursor(cursor: str, expect: type[Any] | None = None) -> uuid.UUID | int:
    """The id a cursor stands for; a malformed cursor, or one of a list whose ids are of
    another type than ``expect`` (uuid.UUID or int), is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        decoded: uuid.UUID | int | None = None
        if kind == "u":
            decoded = uuid.UUID(value)
        elif kind == "i" and -_BIGINT <= (number := int(value)) < _BIGINT:
            decoded = number
        if decoded is not None and (expect is None or isinstance(decoded, expect)):
            return decoded
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise BadRequest("The cursor is not valid; pass next_cursor from a previous page.")


def paginate(
    session: Session,
    stmt: Select[R],
    id_column: InstrumentedAttribute[Any],
    page: PageRequest,
    order: Literal["asc", "desc"] = "desc",
) -> tuple[Sequence[R], str | None]:
    """Rows of one page (newest first by default) and the cursor of the next page."""
    if page.cursor is not None:
        last = decode_cursor(page.cursor, id_column.type.python_type)
        stmt = stmt.where(id_column < last if order == "desc" else id_column > last)
    stmt = stmt.order_by(id_column.desc() if order == "desc" else id_column.asc())
    rows = session.scalars(stmt.limit(page.limit + 1)).all()
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, encode_cursor(getattr(rows[-1], id_column.key))
