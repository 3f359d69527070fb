"""Local endpoints with real replica processes: invoke and the TF Serving shape, scaling under
load without a failed request, crash recovery, controller restarts, metrics, deletion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import BackendError, EndpointSpec, EndpointState, ModelError
from app.backends.local import LocalBackend
from app.backends.local.routing import tfserving_predict
from tests.backends.local.conftest import (
    EXAMPLES,
    processes_under,
    reap_zombies,
    state_of,
    wait_for,
)

pytestmark = pytest.mark.slow
NAME = "ep-1"
REQUEST = json.dumps({"user": 3, "k": 5}).encode()


def _spec(artifact: Path | str, count: int = 1, name: str = NAME) -> EndpointSpec:
    uri = artifact.as_uri() if isinstance(artifact, Path) else artifact
    return EndpointSpec(
        endpoint_name=name, artifact_uri=uri, instance_type="local", instance_count=count
    )


def _state(backend: LocalBackend, name: str = NAME) -> tuple[EndpointState, int]:
    status = backend.describe_endpoints([name])[name]
    return status.state, status.current_instances


def _in_service(backend: LocalBackend, count: int, name: str = NAME) -> None:
    wait_for(lambda: _state(backend, name) == (EndpointState.IN_SERVICE, count), timeout=60)


def _registry(backend: LocalBackend, name: str = NAME) -> list[dict[str, Any]]:
    path = backend.work_dir / "endpoints" / name / "registry.json"
    replicas: list[dict[str, Any]] = json.loads(path.read_text())["replicas"]
    return replicas


def _events(backend: LocalBackend, name: str = NAME) -> list[dict[str, Any]]:
    path = backend.work_dir / "endpoints" / name / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def serving(backend: LocalBackend, recommender_artifact: Path) -> LocalBackend:
    """The backend with the recommender deployed on one replica."""
    backend.create_endpoint(_spec(recommender_artifact))
    _in_service(backend, 1)
    return backend


class Client:
    """A thread that invokes the endpoint back to back and counts what it gets."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.ok = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.backend.invoke(NAME, REQUEST, "application/json")
                assert len(json.loads(answer.body)["items"]) == 5
                self.ok += 1
            except Exception as exc:  # every failure is counted, whatever it is
                self.errors.append(repr(exc))

    def __enter__(self) -> Client:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_invoke_and_the_tf_serving_shape(serving: LocalBackend, recommender_artifact: Path) -> None:
    answer = serving.invoke(NAME, REQUEST, "application/json")
    body = json.loads(answer.body)
    assert body["user"] == 3
    assert len(body["items"]) == 5
    assert answer.content_type == "application/json"
    assert answer.latency_ms > 0

    predictions = tfserving_predict(serving, NAME, [{"user": 1, "k": 2}, 4])
    assert [p["user"] for p in predictions] == [1, 4]
    assert [len(p["items"]) for p in predictions] == [2, 10]

    with pytest.raises(ModelError) as bad_user:
        serving.invoke(NAME, json.dumps({"user": 10_000}).encode(), "application/json")
    assert bad_user.value.status_code == 400
    assert b"unknown user" in bad_user.value.body
    assert not bad_user.value.retryable

    # Creating it again returns the endpoint as it is: no second set of replicas.
    again = serving.create_endpoint(_spec(recommender_artifact))
    assert (again.state, again.current_instances) == (EndpointState.IN_SERVICE, 1)
    assert len(_registry(serving)) == 1


def test_scaling_out_and_in_fails_no_request(serving: LocalBackend) -> None:
    with Client(serving) as client:
        wait_for(lambda: client.ok > 20)
        status = serving.update_capacity(NAME, 3)
        assert status.state == EndpointState.UPDATING
        _in_service(serving, 3)
        served_at_three = client.ok
        wait_for(lambda: client.ok > served_at_three + 50)
        serving.update_capacity(NAME, 1)
        _in_service(serving, 1)
        served_at_one = client.ok
        wait_for(lambda: client.ok > served_at_one + 20)
    assert client.errors == []
    assert client.ok > 90
    kinds = [e["event"] for e in _events(serving)]
    assert kinds.count("replica_started") == 3
    assert kinds.count("replica_draining") == 2
    assert kinds.count("replica_stopped") == 2
    assert [r["state"] for r in _registry(serving)] == ["ready"]


def test_a_crashed_replica_is_restarted_and_recorded(serving: LocalBackend) -> None:
    serving.update_capacity(NAME, 2)
    _in_service(serving, 2)
    victim = _registry(serving)[0]
    with Client(serving) as client:
        wait_for(lambda: client.ok > 10)
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: any(e["event"] == "replica_crashed" for e in _events(serving)))
        _in_service(serving, 2)
        served = client.ok
        wait_for(lambda: client.ok > served + 10)
    # The other replica took every request the dead one could not.
    assert client.errors == []
    crash = next(e for e in _events(serving) if e["event"] == "replica_crashed")
    assert crash["replica"] == victim["id"]
    assert "SIGKILL" in crash["reason"]
    assert victim["pid"] not in [r["pid"] for r in _registry(serving)]


def test_with_its_only_replica_down_requests_fail_retryably(serving: LocalBackend) -> None:
    victim = _registry(serving)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    refused: list[BackendError] = []
    for _ in range(200):  # until the replacement is up
        try:
            serving.invoke(NAME, REQUEST, "application/json")
            break
        except BackendError as exc:
            refused.append(exc)
            time.sleep(0.01)
    assert all(exc.retryable for exc in refused)
    _in_service(serving, 1)


def test_a_new_controller_adopts_running_replicas(serving: LocalBackend) -> None:
    endpoint_dir = serving.work_dir / "endpoints" / NAME
    replica = _registry(serving)[0]
    controller = json.loads((endpoint_dir / "controller.json").read_text())
    os.kill(controller["pid"], signal.SIGKILL)
    wait_for(lambda: state_of(controller["pid"]) in (None, "Z"))
    reap_zombies()
    # The next poll notices and starts a controller, which keeps the replica it finds.
    serving.describe_endpoints([NAME])
    wait_for(lambda: json.loads((endpoint_dir / "controller.json").read_text()) != controller)
    wait_for(lambda: _events(serving)[-1]["event"] == "controller_started")
    assert _events(serving)[-1]["reason"] == "adopted 1 running replica(s)"
    assert [r["pid"] for r in _registry(serving)] == [replica["pid"]]
    serving.invoke(NAME, REQUEST, "application/json")


def test_endpoint_metrics_count_what_was_served(serving: LocalBackend) -> None:
    began = time.time()
    for _ in range(30):
        serving.invoke(NAME, REQUEST, "application/json")
    for _ in range(4):
        with pytest.raises(ModelError):
            serving.invoke(NAME, b'{"user": -1}', "application/json")
    start = datetime.fromtimestamp(began - 1, UTC)
    end = datetime.fromtimestamp(began + 59, UTC)
    samples = serving.fetch_endpoint_metrics(NAME, start, end, 30)
    assert sorted({s.timestamp for s in samples}) == [
        datetime.fromtimestamp(began + 29, UTC),
        datetime.fromtimestamp(began + 59, UTC),
    ]
    # Everything happened within the first period (it started a second before the first call).
    first = {s.name: s.value for s in samples if s.timestamp < end}
    assert first["invocations"] == 34
    assert first["errors_4xx"] == 4
    assert first["errors_5xx"] == 0
    assert first["bytes_in"] == 30 * len(REQUEST) + 4 * len(b'{"user": -1}')
    assert 0 < first["latency_mean_ms"] <= first["latency_p95_ms"] < 1000
    # One replica, ready from about the start of the period (time-weighted).
    assert first["instances"] == pytest.approx(1.0, abs=0.1)
    assert first["invocations_per_instance"] == pytest.approx(34 / first["instances"])
    second = {s.name: s.value for s in samples if s.timestamp == end}
    assert second["invocations"] == 0
    assert "latency_mean_ms" not in second
    assert serving.fetch_endpoint_metrics("no-such-endpoint", start, end, 30) == []


def test_scale_to_zero_then_invoke_is_retryable(serving: LocalBackend) -> None:
    serving.update_capacity(NAME, 0)
    _in_service(serving, 0)
    with pytest.raises(BackendError, match="no replica") as refused:
        serving.invoke(NAME, REQUEST, "application/json")
    assert refused.value.retryable


def test_delete_stops_everything(serving: LocalBackend) -> None:
    endpoint_dir = serving.work_dir / "endpoints" / NAME
    serving.delete_endpoint(NAME)
    assert _state(serving) == (EndpointState.GONE, 0)
    assert not endpoint_dir.exists()
    wait_for(lambda: not processes_under(endpoint_dir), timeout=10)
    with pytest.raises(BackendError, match="no local endpoint") as refused:
        serving.invoke(NAME, REQUEST, "application/json")
    assert not refused.value.retryable
    serving.delete_endpoint(NAME)  # deleting a deleted endpoint is not an error
    assert serving.describe_endpoints(["never-created"]) == {}


def test_a_model_that_cannot_load_fails_the_endpoint(backend: LocalBackend, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    )
    backend.create_endpoint(_spec(model))
    wait_for(lambda: _state(backend)[0] == EndpointState.FAILED, timeout=60)
    status = backend.describe_endpoints([NAME])[NAME]
    assert status.failure_reason is not None
    assert "weights are corrupt" in status.failure_reason


def test_refuses_what_it_cannot_serve(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="none of") as empty:
        backend.create_endpoint(_spec(tmp_path / "empty"))
    assert not empty.value.retryable
    with pytest.raises(BackendError, match="not a s3:// URI"):
        backend.create_endpoint(_spec("s3://bucket/model.tar.gz"))
    # A model version registered before the roots existed cannot read other host paths.
    for outside in ("/etc", "/proc/self/environ"):
        with pytest.raises(BackendError, match="HOST_ROOTS"):
            backend.create_endpoint(_spec(outside))
    with pytest.raises(BackendError, match="no local endpoint"):
        backend.update_capacity("ep-missing", 2)


@pytest.fixture
def iris_model(tmp_path: Path) -> Path:
    """A trained iris classifier directory (model.joblib and code/inference.py)."""
    model = tmp_path / "iris-model"
    env = {**os.environ, "SM_MODEL_DIR": str(model)}
    script = EXAMPLES / "sklearn_iris" / "train.py"
    subprocess.run(
        [sys.executable, str(script), "--epochs", "3"], env=env, check=True, capture_output=True
    )
    return model


def test_the_default_hooks_serve_a_scikit_learn_model(
    backend: LocalBackend, iris_model: Path
) -> None:
    backend.create_endpoint(_spec(iris_model, name="iris-1"))
    _in_service(backend, 1, "iris-1")
    answer = backend.invoke(
        "iris-1", b"[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]", "application/json"
    )
    assert json.loads(answer.body) == [0, 2]
    assert tfserving_predict(backend, "iris-1", [[5.1, 3.5, 1.4, 0.2]]) == [0]
    csv = backend.invoke("iris-1", b"6.7,3.0,5.2,2.3\n", "text/csv")
    assert json.loads(csv.body) == [2]


def test_rolling_to_another_model_fails_no_request(
    serving: LocalBackend, recommender_artifact: Path
) -> None:
    newer = recommender_artifact.with_name("model-v2.tar.gz")
    shutil.copyfile(recommender_artifact, newer)
    with Client(serving) as client:
        wait_for(lambda: client.ok > 20)
        status = serving.update_endpoint_model(_spec(newer, count=2))
        assert status.state == EndpointState.UPDATING
        _in_service(serving, 2)
        served_after = client.ok
        wait_for(lambda: client.ok > served_after + 20)
    assert client.errors == []
    models = {r["model"] for r in _registry(serving)}
    assert len(models) == 1
    assert models != {"model"}  # the replicas serve the new model's directory
    kinds = [e["event"] for e in _events(serving)]
    assert kinds.count("replica_started") == 3  # the first, then two of the new model
    assert kinds.count("replica_draining") == 1  # the old one, once the new ones were ready
    # Asked again (a retried task), nothing changes; rolling back to the first model works too.
    again = serving.update_endpoint_model(_spec(newer, count=2))
    assert (again.state, again.current_instances) == (EndpointState.IN_SERVICE, 2)
    serving.update_endpoint_model(_spec(recommender_artifact, count=1))
    _in_service(serving, 1)
    assert {r["model"] for r in _registry(serving)} == {"model"}
