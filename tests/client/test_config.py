"""Where the client takes its URL and key from: argument, environment, then the config file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import stratus
from stratus import config


def test_file_then_environment_then_argument(
    monkeypatch: pytest.MonkeyPatch, isolated_config: Path
) -> None:
    assert config.resolve() == config.Config(config.DEFAULT_URL, None, "default", "nowhere")
    path = config.save("http://saved:1/", "saved-key")
    assert path == isolated_config / "stratus" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    got = config.resolve()
    assert (got.url, got.api_key, got.api_key_from) == ("http://saved:1", "saved-key", str(path))
    monkeypatch.setenv("STRATUS_API_KEY", "env-key")
    got = config.resolve()
    assert (got.url, got.api_key, got.api_key_from) == ("http://saved:1", "env-key", "environment")
    monkeypatch.setenv("STRATUS_URL", "http://env:2")
    got = config.resolve(api_key="arg-key")
    assert (got.url, got.api_key) == ("http://env:2", "arg-key")
    assert config.resolve(url="http://arg:3").url == "http://arg:3"


def test_home_config_when_xdg_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path() == tmp_path / ".config" / "stratus" / "config.toml"


def test_quotes_in_values_survive_the_file() -> None:
    config.save('http://h:1/"x"', 'k\\"ey')
    got = config.resolve()
    assert (got.url, got.api_key) == ('http://h:1/"x"', 'k\\"ey')


def test_broken_file_and_missing_key_are_errors(isolated_config: Path) -> None:
    with pytest.raises(stratus.StratusError) as missing:
        stratus.Client()
    assert missing.value.code == "no_api_key"
    path = isolated_config / "stratus" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("url = [")
    with pytest.raises(stratus.StratusError) as broken:
        config.resolve()
    assert broken.value.code == "bad_config"
