"""The pieces of `stratus dev`: the admin-key bootstrap, the key file, and child supervision."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.cli import (
    DevChildren,
    _Child,
    bootstrap_admin,
    celery_children,
    default_host_roots,
    write_secret_file,
)
from app.db import build_engine
from app.domain.api_keys.service import authenticate
from app.hostpaths import ROOTS_SETTING
from app.settings import Settings
from tests.conftest import EXAMPLES
from tests.factories import PEPPER


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_file_is_0600_even_over_a_readable_file_and_a_loose_umask(tmp_path: Path) -> None:
    path = tmp_path / "admin-key"
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_secret_file(path, "sk_new")
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    assert path.read_text() == "sk_new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["admin-key"]


def test_bootstrap_creates_one_admin_key_on_first_start_only(sqlite_settings: Settings) -> None:
    key_file = sqlite_settings.data_dir / "admin-key"
    secret = bootstrap_admin(sqlite_settings, key_file)
    assert secret is not None
    assert key_file.read_text().strip() == secret
    assert _mode(key_file) == 0o600

    assert bootstrap_admin(sqlite_settings, key_file) is None
    assert key_file.read_text().strip() == secret

    engine = build_engine(sqlite_settings.effective_database_url)
    try:
        with Session(engine) as session:
            principal = authenticate(session, secret, PEPPER)
    finally:
        engine.dispose()
    assert principal is not None
    assert principal.is_admin


def test_bootstrap_stores_no_key_when_the_file_cannot_be_written(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    unwritable = tmp_path / "missing-dir" / "admin-key"
    with pytest.raises(FileNotFoundError):
        bootstrap_admin(sqlite_settings, unwritable)
    # The rolled-back transaction left no admin behind, so the next start tries again.
    secret = bootstrap_admin(sqlite_settings, sqlite_settings.data_dir / "admin-key")
    assert secret is not None


def test_celery_children_run_the_configured_app_with_the_threads_pool(tmp_path: Path) -> None:
    worker, beat = celery_children(tmp_path / "logs")
    assert worker.args[:5] == [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app:celery_app",
    ]
    assert worker.args[5] == "worker"
    assert "--pool=threads" in worker.args
    assert "--concurrency=2" in worker.args
    assert beat.args[5] == "beat"
    assert "workers.beat:GuardedScheduler" in beat.args
    assert (worker.log.name, beat.log.name) == ("worker.log", "beat.log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_terminates_then_kills_and_leaves_no_process(tmp_path: Path) -> None:
    polite = [sys.executable, "-c", "import time; time.sleep(60)"]
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)",
    ]
    logs = tmp_path / "logs"
    children = DevChildren(
        [_Child("polite", polite, logs / "p.log"), _Child("stubborn", stubborn, logs / "s.log")],
        env=dict(os.environ),
    )
    children.start()
    deadline = time.monotonic() + 20
    while "ready" not in (logs / "s.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [c.proc.pid for c in children.children if c.proc]

    children.stop(timeout=1.0)

    assert [c.proc.returncode for c in children.children if c.proc] == [-15, -9]
    assert not any(_alive(pid) for pid in pids)


def test_a_child_that_dies_is_reported_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    children = DevChildren([_Child("worker", crash, tmp_path / "w.log")], env=dict(os.environ))
    children.start()
    deadline = time.monotonic() + 20
    err = ""
    while "exited unexpectedly" not in err and time.monotonic() < deadline:
        time.sleep(0.1)
        err += capsys.readouterr().err
    children.stop()
    assert "the worker exited unexpectedly (code 3)" in err
    assert str(tmp_path / "w.log") in err


def test_dev_allows_host_paths_under_the_directory_it_started_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOTS_SETTING, raising=False)
    monkeypatch.chdir(tmp_path)
    default_host_roots()
    roots = Settings().backends.local.host_roots
    assert roots[0] == tmp_path.resolve()
    assert roots[1:] == [EXAMPLES.resolve()]  # the shipped examples, for `stratus demo`
    # An admin's choice is kept as it is.
    monkeypatch.setenv(ROOTS_SETTING, f"/srv/data{os.pathsep}/srv/code")
    default_host_roots()
    assert Settings().backends.local.host_roots == [Path("/srv/data"), Path("/srv/code")]
