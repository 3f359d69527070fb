"""Local-backend fixtures: a backend on a temporary work dir, with this test process standing in
for init (it adopts and reaps what the backend detaches), and nothing left running afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import JobState, JobStatus, MetricDefinition, TrainingJobSpec
from app.backends.local import LocalBackend
from app.backends.local.procs import children_of
from app.settings import Settings
from tests.workers.conftest import app_on_pg, committed  # noqa: F401 - shared fixtures

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
ENDED = (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)
PR_SET_CHILD_SUBREAPER = 36


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(every)


def wait_job(backend: LocalBackend, name: str, timeout: float = 60.0) -> JobStatus:
    """The job's status once it has ended."""

    def ended() -> JobStatus | None:
        status = backend.describe_jobs({name: JobState.UNKNOWN}).get(name)
        return status if status is not None and status.state in ENDED else None

    result: JobStatus = wait_for(ended, timeout)
    return result


def job(name: str, source: Path, entrypoint: str = "train.py", **fields: Any) -> TrainingJobSpec:
    """A training job spec with test-friendly defaults."""
    metrics = fields.pop("metric_definitions", ())
    return TrainingJobSpec(
        job_name=name,
        instance_type="local",
        instance_count=fields.pop("instance_count", 1),
        max_runtime_seconds=fields.pop("max_runtime_seconds", 120),
        entrypoint=entrypoint,
        source_dir=str(source),
        metric_definitions=tuple(MetricDefinition(m["name"], m["regex"]) for m in metrics),
        **fields,
    )


def script(directory: Path, text: str, name: str = "train.py") -> Path:
    """Write a training script into ``directory`` and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory


def state_of(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (Z for a zombie), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2]


def reap_zombies() -> None:
    """Reap this process's exited children (the orphans it adopted as subreaper)."""
    for pid in children_of(os.getpid()):
        if state_of(pid) == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(path) in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                if state_of(int(entry.name)) not in (None, "Z"):
                    found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def as_init() -> Iterator[None]:
    """Adopt what the backend detaches, as init would, so its exit is reaped here."""
    if sys.platform != "linux":
        pytest.skip("the local backend's process handling is tested on Linux")
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield
    reap_zombies()
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture
def local_settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with short grace periods, on a work dir of this test's own; host paths under
    the session's temporary directories (shared artifacts live there) and the examples."""
    local = {
        "host_roots": [tmp_path_factory.getbasetemp(), EXAMPLES],
        "work_dir": tmp_path / "local",
        "stop_grace_s": 1.0,
        "drain_timeout_s": 5.0,
        "replica_start_timeout_s": 30.0,
        "invoke_timeout_s": 10.0,
    }
    return Settings(data_dir=tmp_path / "stratus-data", backends={"local": local})


@pytest.fixture
def backend(local_settings: Settings) -> Iterator[LocalBackend]:
    """A local backend; whatever it started is killed and reaped afterwards."""
    built = LocalBackend(local_settings)
    yield built
    built.close()
    for pid in processes_under(built.work_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(pytest.fail.Exception):
        wait_for(lambda: not processes_under(built.work_dir), timeout=10)
    time.sleep(0.1)
    reap_zombies()


@pytest.fixture(scope="session")
def recommender_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained recommender, packed as model.tar.gz (trained once per session)."""
    import subprocess  # noqa: PLC0415 - only this fixture runs a script directly

    root = tmp_path_factory.mktemp("recommender")
    model = root / "model"
    env = {**os.environ, "SM_MODEL_DIR": str(model)}
    args = ["--epochs", "3", "--users", "200", "--items", "150"]
    subprocess.run(
        [sys.executable, str(EXAMPLES / "recommender" / "train.py"), *args],
        env=env,
        check=True,
        capture_output=True,
    )
    artifact = root / "model.tar.gz"
    with tarfile.open(artifact, "w:gz") as archive:
        for path in sorted(model.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(model)), recursive=False)
    return artifact
