"""CLI commands read settings from the environment; leave no cached settings behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.settings import get_settings


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
