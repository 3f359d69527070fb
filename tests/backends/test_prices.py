"""Instance prices and cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.backends.prices import cost_usd, hourly_price, price_table
from app.settings import get_settings


def test_defaults() -> None:
    table = price_table(None)
    assert hourly_price("ml.m5.large", table) == pytest.approx(0.115)
    assert hourly_price("ml.g4dn.xlarge", table) == pytest.approx(0.736)
    assert hourly_price("local", table) == 0.0
    assert hourly_price("local.gpu", table) == 0.0
    assert hourly_price("ml.unknown.huge", table) is None
    assert "_note" not in table


def test_cost() -> None:
    table = price_table(None)
    assert cost_usd("ml.m5.large", 7200, table) == pytest.approx(0.23)
    assert cost_usd("local", 10_000, table) == 0.0
    assert cost_usd("ml.unknown.huge", 3600, table) is None
    assert cost_usd("ml.m5.large", -5, table) == 0.0


def test_price_file_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"ml.m5.large": 0.2, "ml.trn1.*": 1.5, "_source": "contract"}))
    table = price_table(path)
    assert hourly_price("ml.m5.large", table) == 0.2
    assert hourly_price("ml.trn1.32xlarge", table) == 1.5
    assert hourly_price("ml.c5.xlarge", table) == pytest.approx(0.204)


def test_settings_price_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"ml.m5.large": 9.0}))
    monkeypatch.setenv("STRATUS_BACKENDS__PRICE_FILE", str(path))
    get_settings.cache_clear()
    try:
        assert hourly_price("ml.m5.large") == 9.0
        assert cost_usd("ml.m5.large", 1800) == 4.5
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "price file"),
        ("[1, 2]", "expected an object"),
        ('{"ml.m5.large": "cheap"}', "non-negative number"),
        ('{"ml.m5.large": -1}', "non-negative number"),
    ],
)
def test_bad_price_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=words):
        price_table(path)
