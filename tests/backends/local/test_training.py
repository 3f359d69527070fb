"""Local training with real processes: the examples end to end, the script contract, stop,
the runtime limit, failures, a vanished supervisor, and idempotent, re-attachable submits."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import tarfile
from pathlib import Path

import pytest

from app.backends.base import Backend, BackendError, JobState
from app.backends.local import LocalBackend
from app.backends.local.examples import IRIS_METRICS, RECOMMENDER_METRICS
from app.settings import Settings
from tests.backends.local.conftest import (
    EXAMPLES,
    job,
    processes_under,
    reap_zombies,
    script,
    state_of,
    wait_for,
    wait_job,
)

LOOP = """
import signal, sys, time
{prelude}
for step in range(1, 100000):
    print(f"step={{step}} value={{step * 0.5}}", flush=True)
    time.sleep(0.05)
"""


def _running(backend: LocalBackend, name: str) -> bool:
    status = backend.describe_jobs({name: JobState.UNKNOWN}).get(name)
    return status is not None and status.state == JobState.RUNNING


def _archive_names(uri: str) -> set[str]:
    with tarfile.open(uri.removeprefix("file://")) as archive:
        return set(archive.getnames())


def test_the_backend_is_a_backend(backend: LocalBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "local"


@pytest.mark.slow
def test_recommender_example_trains_with_live_metrics_and_an_artifact(
    backend: LocalBackend,
) -> None:
    hps = {"epochs": 3, "users": 200, "items": 150, "seed": 3}
    spec = job(
        "rec-1",
        EXAMPLES / "recommender",
        hyperparameters=hps,
        metric_definitions=RECOMMENDER_METRICS,
    )
    assert backend.submit_training(spec) == "rec-1"
    status = wait_job(backend, "rec-1")

    assert status.state == JobState.COMPLETED, status.failure_reason
    assert status.artifact_uri is not None
    assert status.artifact_uri.startswith("file:///")
    assert {"model.npz", "meta.json", "code/inference.py"} <= _archive_names(status.artifact_uri)
    assert set(status.final_metrics) == {"loss", "precision_at_10", "recall_at_10", "ndcg_at_10"}
    assert status.billable_seconds is not None
    assert status.billable_seconds > 0
    assert status.started_at is not None
    assert status.ended_at is not None
    assert status.started_at <= status.ended_at

    page = backend.fetch_training_metrics("rec-1", None)
    steps: dict[str, list[int | None]] = {}
    for point in page.points:
        steps.setdefault(point.name, []).append(point.step)
    assert steps == {name: [1, 2, 3] for name in status.final_metrics}
    assert page.next_cursor is not None
    again = backend.fetch_training_metrics("rec-1", page.next_cursor)
    assert (list(again.points), again.next_cursor) == ([], page.next_cursor)
    last_loss = [p.value for p in page.points if p.name == "loss"][-1]
    assert status.final_metrics["loss"] == last_loss

    logs = backend.fetch_logs("rec-1", None, 1000)
    assert any(line.startswith("epoch=3 loss=") for line in logs.lines)
    assert logs.next_cursor is None  # ended and read to the end


@pytest.mark.slow
def test_sklearn_example_trains(backend: LocalBackend) -> None:
    spec = job(
        "iris-1",
        EXAMPLES / "sklearn_iris",
        hyperparameters={"epochs": 5},
        metric_definitions=IRIS_METRICS,
    )
    backend.submit_training(spec)
    status = wait_job(backend, "iris-1")
    assert status.state == JobState.COMPLETED, status.failure_reason
    assert status.final_metrics["accuracy"] > 0.7
    assert status.artifact_uri is not None
    assert {"model.joblib", "code/inference.py"} <= _archive_names(status.artifact_uri)


def test_script_contract_with_two_hosts(backend: LocalBackend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n")
    source = script(
        tmp_path / "src",
        """
import json, os, sys
host = os.environ["SM_CURRENT_HOST"]
seen = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
seen["argv"] = sys.argv[1:]
seen["rows"] = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "rows.csv")).read()
with open(os.path.join(os.environ["SM_MODEL_DIR"], host + ".json"), "w") as f:
    json.dump(seen, f)
print("hello from", host, flush=True)
""",
    )
    spec = job(
        "contract-1",
        source,
        instance_count=2,
        hyperparameters={"epochs": 2, "lr": 0.5, "mode": "fast"},
        input_channels={"train": data.as_uri()},
    )
    backend.submit_training(spec)
    status = wait_job(backend, "contract-1")
    assert status.state == JobState.COMPLETED, status.failure_reason
    assert status.artifact_uri is not None
    assert {"algo-1.json", "algo-2.json"} <= _archive_names(status.artifact_uri)
    job_dir = backend.work_dir / "jobs" / "contract-1"
    seen = {
        host: json.loads((job_dir / "hosts" / host / "model" / f"{host}.json").read_text())
        for host in ("algo-1", "algo-2")
    }
    for host, env in seen.items():
        assert env["SM_CURRENT_HOST"] == host
        assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"]
        assert env["argv"] == ["--epochs", "2", "--lr", "0.5", "--mode", "fast"]
        assert json.loads(env["SM_HPS"]) == {"epochs": 2, "lr": 0.5, "mode": "fast"}
        assert env["rows"] == "a,b\n"
        assert int(env["SM_NUM_CPUS"]) >= 1
        assert env["SM_OUTPUT_DATA_DIR"].endswith(f"{host}/output/data")
    assert seen["algo-1"]["SM_MODEL_DIR"] != seen["algo-2"]["SM_MODEL_DIR"]
    lines = backend.fetch_logs("contract-1", None, 100).lines
    assert "[algo-1] hello from algo-1" in lines
    assert "[algo-2] hello from algo-2" in lines
    # Stratus's own settings and secrets are not the script's business.
    assert not any(k.startswith("STRATUS_") for k in seen["algo-1"])


def test_a_failing_script_reports_its_last_log_lines(backend: LocalBackend, tmp_path: Path) -> None:
    source = script(
        tmp_path / "src",
        "for i in range(30):\n    print('loading shard', i)\n"
        "raise RuntimeError('boom: the data is not there')\n",
    )
    backend.submit_training(job("fail-1", source))
    status = wait_job(backend, "fail-1")
    assert status.state == JobState.FAILED
    assert status.failure_reason is not None
    assert "algo-1 exited with code 1" in status.failure_reason
    assert "loading shard 29" in status.failure_reason
    assert "loading shard 5\n" not in status.failure_reason  # the last lines, not all of them
    assert "RuntimeError: boom: the data is not there" in status.failure_reason
    assert status.artifact_uri is None


def test_stop_mid_run(backend: LocalBackend, tmp_path: Path) -> None:
    source = script(tmp_path / "src", LOOP.format(prelude=""))
    rules = [{"name": "value", "regex": r"value=(\S+)"}]
    backend.submit_training(job("stop-1", source, metric_definitions=rules))
    wait_for(lambda: backend.fetch_training_metrics("stop-1", None).points)
    assert _running(backend, "stop-1")
    backend.stop_training("stop-1")
    status = wait_job(backend, "stop-1")
    assert status.state == JobState.STOPPED
    assert status.failure_reason is None
    backend.stop_training("stop-1")  # stopping an ended job is not an error
    backend.stop_training("never-submitted")


def test_stop_escalates_to_sigkill_after_the_grace_period(
    backend: LocalBackend, tmp_path: Path
) -> None:
    source = script(
        tmp_path / "src", LOOP.format(prelude="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    )
    backend.submit_training(job("stubborn-1", source))
    wait_for(lambda: _running(backend, "stubborn-1"))
    wait_for(lambda: backend.fetch_logs("stubborn-1", None, 5).lines[1:])
    backend.stop_training("stubborn-1")
    wait_for(lambda: backend.describe_jobs({"stubborn-1": JobState.RUNNING}))
    status = wait_job(backend, "stubborn-1")
    assert status.state == JobState.STOPPED
    lines = backend.fetch_logs("stubborn-1", None, 10_000).lines
    assert "[stratus] algo-1 ignored SIGTERM; sending SIGKILL" in lines


def test_max_runtime_is_enforced(backend: LocalBackend, tmp_path: Path) -> None:
    source = script(tmp_path / "src", LOOP.format(prelude=""))
    backend.submit_training(job("slow-1", source, max_runtime_seconds=1))
    status = wait_job(backend, "slow-1")
    assert status.state == JobState.FAILED
    assert status.secondary_status == "MaxRuntimeExceeded"
    assert status.failure_reason is not None
    assert "maximum runtime of 1 s" in status.failure_reason


def test_a_vanished_supervisor_fails_the_job_and_leaves_nothing_behind(
    backend: LocalBackend, tmp_path: Path
) -> None:
    source = script(tmp_path / "src", LOOP.format(prelude=""))
    backend.submit_training(job("orphan-1", source))
    wait_for(lambda: _running(backend, "orphan-1"))
    job_dir = backend.work_dir / "jobs" / "orphan-1"
    state = json.loads((job_dir / "state.json").read_text())
    host_pid = state["hosts"][0]["pid"]
    os.kill(state["pid"], signal.SIGKILL)

    status = wait_job(backend, "orphan-1")
    assert status.state == JobState.FAILED
    assert status.failure_reason is not None
    assert "supervisor process vanished" in status.failure_reason

    def all_gone() -> bool:
        reap_zombies()  # this test process stands in for init: it reaps what it adopted
        return state_of(state["pid"]) is None and state_of(host_pid) is None

    wait_for(all_gone, timeout=10)
    assert processes_under(job_dir) == []
    # The verdict is stable: a second look reports the same.
    again = backend.describe_jobs({"orphan-1": JobState.RUNNING})["orphan-1"]
    assert again.failure_reason == status.failure_reason


def test_submit_is_idempotent_and_a_new_process_reattaches(
    backend: LocalBackend, local_settings: Settings, tmp_path: Path
) -> None:
    source = script(tmp_path / "src", LOOP.format(prelude=""))
    spec = job("twice-1", source)
    assert backend.submit_training(spec) == "twice-1"
    launch = (backend.work_dir / "jobs" / "twice-1" / "launch.json").read_text()
    assert backend.submit_training(spec) == "twice-1"
    assert (backend.work_dir / "jobs" / "twice-1" / "launch.json").read_text() == launch
    wait_for(lambda: _running(backend, "twice-1"))

    # Another process (a restarted worker, the API) sees the same job from the files alone.
    other = LocalBackend(local_settings)
    assert other.describe_jobs({"twice-1": JobState.STARTING})["twice-1"].state == JobState.RUNNING
    assert other.describe_jobs({"twice-1": JobState.RUNNING}) == {}
    assert other.describe_jobs({"unknown-job": JobState.RUNNING}) == {}
    other.stop_training("twice-1")
    assert wait_job(backend, "twice-1").state == JobState.STOPPED
    # The supervisor exits right after it publishes the final status.
    wait_for(lambda: not processes_under(backend.work_dir), timeout=10)
    other.close()


def test_logs_are_paged_by_cursor(backend: LocalBackend, tmp_path: Path) -> None:
    source = script(tmp_path / "src", "for i in range(5):\n    print('line', i)\n")
    backend.submit_training(job("pages-1", source))
    wait_job(backend, "pages-1")
    cursor: str | None = None
    lines: list[str] = []
    for _ in range(10):
        page = backend.fetch_logs("pages-1", cursor, 2)
        lines += page.lines
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [line for line in lines if line.startswith("line")] == [f"line {i}" for i in range(5)]
    with pytest.raises(BackendError, match="cursor") as bad:
        backend.fetch_logs("pages-1", "x1", 2)
    assert not bad.value.retryable


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image": "my/image:1"}, "not container images"),
        ({"source_dir": "/nonexistent/src"}, "HOST_ROOTS"),
        ({"source_dir": "/etc"}, "not under an allowed host root"),
        ({"source_dir": "src"}, "relative"),
        ({"source_dir": None}, "needs a source_dir"),
        ({"entrypoint": "missing.py"}, "not found"),
        ({"entrypoint": "../src/train.py"}, "not found"),
        ({"input_channels": {"train": "s3://bucket/data"}}, "not a s3:// URI"),
        ({"input_channels": {"train": "/nonexistent/data"}}, "HOST_ROOTS"),
        ({"input_channels": {"train": "/proc/self/environ"}}, "HOST_ROOTS"),
        ({"output_location": "/etc/stratus-out"}, "HOST_ROOTS"),
        ({"job_name": "../escape"}, "job names must match"),
    ],
)
def test_refuses_what_it_cannot_run(
    backend: LocalBackend, tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    source = script(tmp_path / "src", "print('hi')\n")
    spec = dataclasses.replace(job("bad-1", source), **fields)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match=message) as refused:
        backend.submit_training(spec)
    assert not refused.value.retryable
    with pytest.raises(BackendError, match="no local training job"):
        backend.fetch_training_metrics("bad-1", None)


def test_a_spec_stored_before_the_roots_cannot_reach_other_paths(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """The backend checks again at submit: its own work dir, and links out of the roots."""
    source = script(tmp_path / "src", "print('hi')\n")
    (tmp_path / "escape").symlink_to("/etc")
    for fields in (
        {"source_dir": str(backend.work_dir)},
        {"input_channels": {"train": str(backend.work_dir / "jobs")}},
        {"input_channels": {"train": str(tmp_path / "escape")}},
        {"output_location": (tmp_path / "escape" / "out").as_uri()},
    ):
        spec = dataclasses.replace(job("bad-2", source), **fields)  # type: ignore[arg-type]
        with pytest.raises(BackendError, match="HOST_ROOTS"):
            backend.submit_training(spec)
    assert not (backend.work_dir / "jobs" / "bad-2").exists()
