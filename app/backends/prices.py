"""Instance prices (USD per instance-hour) for cost figures; a price file overrides the defaults.

Keys are instance types; a key with ``*`` is a glob (``"local.*"``). Keys starting with ``_``
are notes. Unknown types have no price, and their cost is None rather than a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

from app.settings import get_settings

DEFAULTS = Path(__file__).with_name("prices.json")


def _read(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"price file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"price file {path}: expected an object of instance type -> USD/hour")
    table: dict[str, float] = {}
    for key, value in raw.items():
        if key.startswith("_"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"price file {path}: {key!r} needs a non-negative number")
        table[key] = float(value)
    return table


@lru_cache(maxsize=8)
def price_table(price_file: Path | None = None) -> Mapping[str, float]:
    """The default prices, overlaid with ``price_file`` when one is given."""
    table = _read(DEFAULTS)
    if price_file is not None:
        table.update(_read(price_file))
    return table


def _configured() -> Mapping[str, float]:
    return price_table(get_settings().backends.price_file)


def hourly_price(instance_type: str, table: Mapping[str, float] | None = None) -> float | None:
    """USD per hour of one ``instance_type`` instance, or None when the price is unknown."""
    prices = _configured() if table is None else table
    if instance_type in prices:
        return prices[instance_type]
    # Longest pattern first, so "ml.g5.*" would win over "ml.*".
    for pattern in sorted((k for k in prices if "*" in k), key=len, reverse=True):
        if fnmatchcase(instance_type, pattern):
            return prices[pattern]
    return None


def cost_usd(
    instance_type: str, instance_seconds: float, table: Mapping[str, float] | None = None
) -> float | None:
    """What ``instance_seconds`` (instances x seconds) of ``instance_type`` cost, if priced."""
    price = hourly_price(instance_type, table)
    if price is None:
        return None
    return price * max(0.0, instance_seconds) / 3600.0
