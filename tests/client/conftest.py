"""Client tests never read the developer's own config file or environment."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("STRATUS_URL", raising=False)
    monkeypatch.delenv("STRATUS_API_KEY", raising=False)
    return home
