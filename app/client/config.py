"""Where the client finds its server and key: arguments, then ``STRATUS_URL`` /
``STRATUS_API_KEY``, then the file ``stratus login`` writes
(``$XDG_CONFIG_HOME/stratus/config.toml``, by default ``~/.config/stratus/config.toml``)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import StratusError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "STRATUS_URL"
KEY_ENV = "STRATUS_API_KEY"


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str | None
    # Where each value came from ("argument", "environment", a file path, "default"), for humans.
    url_from: str = "default"
    api_key_from: str = "nowhere"


def config_path() -> Path:
    """The config file: ``$XDG_CONFIG_HOME/stratus/config.toml`` or ``~/.config/...``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stratus" / "config.toml"


def read_file(path: Path | None = None) -> dict[str, str]:
    """The file's ``url`` and ``api_key`` (missing file: empty); a broken file is an error."""
    path = path or config_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StratusError(0, "bad_config", f"cannot read {path}: {exc}") from exc
    return {k: str(v) for k, v in raw.items() if k in ("url", "api_key") and v}


def resolve(url: str | None = None, api_key: str | None = None) -> Config:
    """Each of url and key from the first place that has it: argument, environment, file."""
    path = config_path()
    stored = read_file(path)
    env_url, env_key = os.environ.get(URL_ENV), os.environ.get(KEY_ENV)
    url_pick = _first((url, "argument"), (env_url, "environment"), (stored.get("url"), str(path)))
    key_pick = _first(
        (api_key, "argument"), (env_key, "environment"), (stored.get("api_key"), str(path))
    )
    return Config(
        url=(url_pick[0] or DEFAULT_URL).rstrip("/"),
        api_key=key_pick[0],
        url_from=url_pick[1] or "default",
        api_key_from=key_pick[1] or "nowhere",
    )


def _first(*candidates: tuple[str | None, str]) -> tuple[str | None, str | None]:
    for value, origin in candidates:
        if value:
            return value, origin
    return None, None


def save(url: str, api_key: str, path: Path | None = None) -> Path:
    """Write url and key to the config file, readable by its owner only (mode 0600)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # JSON strings are valid TOML basic strings.
    text = f"url = {json.dumps(url.rstrip('/'))}\napi_key = {json.dumps(api_key)}\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
