"""UUIDv7 ids: valid, and strictly increasing within a process."""

from __future__ import annotations

import time

from app.ids import uuid7


def test_ids_are_version_7_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_carries_its_creation_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ms = uuid7().int >> 80
    assert before <= ms <= before + 1000
