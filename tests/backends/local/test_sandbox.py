"""The local backend's sandbox with real processes: what a job or a replica can read (nothing of
Stratus's), its uid and limits, symlinks out of a model, metric regexes that never finish, and
the production acknowledgement."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.backends.base import BackendError, EndpointSpec, EndpointState, JobState
from app.backends.local import LocalBackend
from app.backends.local.mounts import traversable
from app.backends.local.scraping import OffLoopScraper
from app.settings import Settings
from tests.backends.local.conftest import job, script, wait_for, wait_job

root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox switches uids, which needs root (CI runs as root)"
)
UID, COUNT = 65534, 50
LIMITS = {"cpu_seconds": 600, "memory_bytes": 8 * 1024**3, "open_files": 512, "processes": 200}
SECRET = "s3cret-in-the-environment"

PROBE = """
import json, os, resource, sys
targets = json.loads(os.environ["PROBE_TARGETS"])
def attempt(path):
    try:
        if os.path.isdir(path):
            return "listed: " + ",".join(sorted(os.listdir(path)))
        with open(path, "rb") as handle:
            return "read: " + handle.read(200).decode(errors="replace")
    except OSError as exc:
        return "denied: " + type(exc).__name__
seen = {name: attempt(path) for name, path in targets.items()}
limits = {name: resource.getrlimit(getattr(resource, name))[0]
          for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC")}
report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "seen": seen,
          "limits": limits, "env": dict(os.environ), "cwd": os.getcwd()}
print(json.dumps(report), flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "report.json"), "w") as handle:
    json.dump(report, handle)
"""

HOLDER = """
import os, time
with open(os.path.join(os.environ["SM_MODEL_DIR"], "private.txt"), "w") as handle:
    handle.write("other job's model")
print("uid", os.getuid(), flush=True)
time.sleep(60)
"""


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    """Short grace periods, a uid range of the test's own and small resource limits."""
    local = {
        "work_dir": tmp_path / "local",
        "host_roots": [tmp_path],  # the tests' scripts and channels live there
        "stop_grace_s": 1.0,
        "drain_timeout_s": 5.0,
        "replica_start_timeout_s": 30.0,
        "invoke_timeout_s": 10.0,
        "sandbox_uid": UID,
        "sandbox_gid": UID,
        "sandbox_uid_count": COUNT,
        **{f"sandbox_{name}": value for name, value in LIMITS.items()},
        "metric_regex_timeout_s": 0.5,
    }
    return Settings(data_dir=tmp_path, backends={"local": local})


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The data dir's secret files, and a secret in this process's environment."""
    monkeypatch.setenv("STRATUS_TEST_SECRET", SECRET)
    files = {"admin_key": "admin-key", "database": "stratus.db", "broker": "broker.db"}
    paths = {name: tmp_path / file for name, file in files.items()}
    for name, path in paths.items():
        path.write_text(f"{name} {SECRET}")
        path.chmod(0o644)  # even readable by everyone, the sandbox must not reach it
    return paths


def _running_host_pid(backend: LocalBackend, name: str) -> int:
    state_file = backend.work_dir / "jobs" / name / "state.json"

    def host_pid() -> int | None:
        try:
            hosts = json.loads(state_file.read_text()).get("hosts") or []
        except (OSError, ValueError):
            return None
        return int(hosts[0]["pid"]) if hosts else None

    pid: int = wait_for(host_pid)
    return pid


def _report(backend: LocalBackend, name: str) -> dict[str, Any]:
    path = backend.work_dir / "jobs" / name / "hosts" / "algo-1" / "model" / "report.json"
    report: dict[str, Any] = json.loads(path.read_text())
    return report


@root_only
@pytest.mark.slow
def test_a_job_reads_none_of_stratus_nor_other_jobs(
    backend: LocalBackend, secrets: dict[str, Path], tmp_path: Path
) -> None:
    backend.submit_training(job("holder", script(tmp_path / "holder", HOLDER)))
    holder_pid = _running_host_pid(backend, "holder")
    other = backend.work_dir / "jobs" / "holder"
    wait_for(lambda: (other / "hosts" / "algo-1" / "model" / "private.txt").exists())
    supervisor = json.loads((other / "launch.json").read_text())["pid"]
    targets = {
        **{name: str(path) for name, path in secrets.items()},
        "data_dir": str(tmp_path),
        "jobs_dir": str(backend.work_dir / "jobs"),
        "other_model": str(other / "hosts" / "algo-1" / "model" / "private.txt"),
        "other_job_json": str(other / "job.json"),
        "test_environ": f"/proc/{os.getpid()}/environ",
        "supervisor_environ": f"/proc/{supervisor}/environ",
        "other_job_environ": f"/proc/{holder_pid}/environ",
        "init_environ": "/proc/1/environ",
    }
    source = script(tmp_path / "probe", PROBE)
    spec = job("probe", source, environment={"PROBE_TARGETS": json.dumps(targets)})
    backend.submit_training(spec)
    status = wait_job(backend, "probe")
    assert status.state == JobState.COMPLETED, status.failure_reason

    report = _report(backend, "probe")
    leaked = {k: v for k, v in report["seen"].items() if not v.startswith("denied")}
    # The data dir and the jobs dir show nothing but what the job itself needs.
    assert leaked.pop("data_dir", "listed: local").removeprefix("listed: ") in ("", "local")
    assert leaked.pop("jobs_dir", "listed: probe") == "listed: probe"
    assert leaked == {}
    assert SECRET not in json.dumps(report)
    assert UID <= report["uid"] < UID + COUNT
    assert report["gid"] == UID + (report["uid"] - UID)
    assert report["groups"] == []
    holder_log = backend.fetch_logs("holder", None, 10).lines
    holder_uid = int(next(line for line in holder_log if line.startswith("uid ")).split()[1])
    assert holder_uid != report["uid"], "concurrent jobs run under different uids"
    assert report["limits"] == {
        "RLIMIT_CPU": LIMITS["cpu_seconds"],
        "RLIMIT_AS": LIMITS["memory_bytes"],
        "RLIMIT_NOFILE": LIMITS["open_files"],
        "RLIMIT_NPROC": LIMITS["processes"],
    }
    env = report["env"]
    assert not any(k.startswith("STRATUS_") for k in env)
    job_dir = backend.work_dir / "jobs" / "probe"
    assert Path(env["HOME"]).is_relative_to(job_dir)
    assert Path(env["TMPDIR"]).is_relative_to(job_dir)
    assert report["cwd"] == str(job_dir / "code")
    # Afterwards the job's files are root's again, and packed.
    assert (job_dir / "hosts" / "algo-1" / "model" / "report.json").stat().st_uid == 0
    assert status.artifact_uri is not None
    backend.stop_training("holder")
    assert wait_job(backend, "holder").state == JobState.STOPPED


NUMPY_TRAIN = """
import json, os
import numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 3))
w_true = np.array([1.5, -2.0, 0.5])
y = x @ w_true + rng.normal(scale=0.01, size=200)
w = np.linalg.lstsq(x, y, rcond=None)[0]
print(f"epoch=1 loss={float(np.mean((x @ w - y) ** 2)):.6f}", flush=True)
os.makedirs(os.path.join(os.environ["SM_MODEL_DIR"], "weights"), exist_ok=True)
np.save(os.path.join(os.environ["SM_MODEL_DIR"], "weights", "w.npy"), w)
os.symlink("/etc/hostname", os.path.join(os.environ["SM_MODEL_DIR"], "outside"))
os.symlink(os.environ["ADMIN_KEY"], os.path.join(os.environ["SM_MODEL_DIR"], "key"))
"""


@root_only
@pytest.mark.slow
def test_a_numpy_job_trains_and_its_symlinks_stay_links(
    backend: LocalBackend, secrets: dict[str, Path], tmp_path: Path
) -> None:
    rules = [{"name": "loss", "regex": r"loss=([0-9.]+)"}]
    spec = job(
        "numpy-1",
        script(tmp_path / "np", NUMPY_TRAIN),
        metric_definitions=rules,
        environment={"ADMIN_KEY": str(secrets["admin_key"])},
    )
    backend.submit_training(spec)
    status = wait_job(backend, "numpy-1")
    assert status.state == JobState.COMPLETED, status.failure_reason
    assert status.final_metrics["loss"] < 0.01
    assert status.artifact_uri is not None
    path = urllib.parse.urlparse(status.artifact_uri).path
    with tarfile.open(path) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert members["weights/w.npy"].isfile()
        assert members["outside"].issym()
        assert members["outside"].linkname == "/etc/hostname"
        assert members["key"].issym()
        contents = b"".join(
            archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in members.values()
            if m.isfile()
        )
    assert SECRET.encode() not in contents


ESCAPE = """
import os, shutil
model = os.environ["SM_MODEL_DIR"]
shutil.rmtree(model)
os.symlink(os.environ["DATA_DIR"], model)
"""


@root_only
@pytest.mark.slow
def test_a_model_dir_swapped_for_a_symlink_is_not_packed(
    backend: LocalBackend, secrets: dict[str, Path], tmp_path: Path
) -> None:
    spec = job(
        "escape-1", script(tmp_path / "esc", ESCAPE), environment={"DATA_DIR": str(tmp_path)}
    )
    backend.submit_training(spec)
    status = wait_job(backend, "escape-1")
    assert status.state == JobState.FAILED
    assert "model directory is not a directory" in (status.failure_reason or "")
    assert not (backend.work_dir / "jobs" / "escape-1" / "model.tar.gz").exists()


SHELL_PROBE = """
for path in "$ADMIN_KEY" "$DATABASE" "$OTHER" /proc/1/environ "/proc/$TEST_PID/environ"; do
  if cat "$path" >/dev/null 2>&1; then echo "read $path"; else echo "denied $path"; fi
done
echo "uid $(id -u)"
"""


@pytest.fixture
def open_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir under a path every uid may traverse (pytest's own tmp dirs are 0700)."""
    monkeypatch.setenv("STRATUS_TEST_SECRET", SECRET)
    base = Path(tempfile.mkdtemp(prefix="stratus-sandbox-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@root_only
@pytest.mark.slow
def test_without_namespaces_file_modes_still_keep_the_secrets(
    local_settings: Settings, open_base: Path
) -> None:
    data_dir = open_base / "data"
    data_dir.mkdir(mode=0o755)
    for name in ("admin-key", "stratus.db"):
        (data_dir / name).write_text(SECRET)
        (data_dir / name).chmod(0o644)
    local = local_settings.backends.local.model_dump() | {
        "sandbox_namespaces": False,
        "work_dir": data_dir / "local",
        "host_roots": [open_base],
    }
    backend = LocalBackend(Settings(data_dir=data_dir, backends={"local": local}))
    try:
        first = script(open_base / "a", 'echo "$SM_MODEL_DIR" > "$SM_MODEL_DIR/m"\n', "run.sh")
        backend.submit_training(job("first", first, "run.sh", environment={"X": SECRET}))
        status = wait_job(backend, "first")
        assert status.state == JobState.COMPLETED, status.failure_reason
        env = {
            "ADMIN_KEY": str(data_dir / "admin-key"),
            "DATABASE": str(data_dir / "stratus.db"),
            "OTHER": str(backend.work_dir / "jobs" / "first" / "job.json"),
            "TEST_PID": str(os.getpid()),
        }
        source = script(open_base / "b", SHELL_PROBE, "run.sh")
        backend.submit_training(job("second", source, "run.sh", environment=env))
        status = wait_job(backend, "second")
        lines = backend.fetch_logs("second", None, 100).lines
    finally:
        backend.close()
    assert status.state == JobState.COMPLETED, status.failure_reason
    assert [line for line in lines if line.startswith("read ")] == []
    assert len([line for line in lines if line.startswith("denied ")]) == 5
    uid = int(next(line for line in lines if line.startswith("uid ")).split()[1])
    assert UID <= uid < UID + COUNT
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711


@root_only
@pytest.mark.slow
def test_without_namespaces_an_unreachable_interpreter_fails_the_job(
    local_settings: Settings, open_base: Path
) -> None:
    import sys  # noqa: PLC0415 - only this test looks at the interpreter's home

    home = os.path.realpath(sys.base_prefix)
    if all(traversable(str(p), UID, UID) for p in Path(home).parents):
        pytest.skip("this interpreter is reachable by the sandbox uid; nothing to refuse")
    local = local_settings.backends.local.model_dump() | {
        "sandbox_namespaces": False,
        "work_dir": open_base / "local",
        "host_roots": [open_base],
    }
    backend = LocalBackend(Settings(data_dir=open_base, backends={"local": local}))
    try:
        backend.submit_training(job("plain-1", script(open_base / "p", "print('hi')\n")))
        status = wait_job(backend, "plain-1")
    finally:
        backend.close()
    assert status.state == JobState.FAILED
    assert f"cannot run the interpreter {sys.executable}" in (status.failure_reason or "")
    assert "CAP_SYS_ADMIN" in (status.failure_reason or "")
    assert stat.S_IMODE(open_base.stat().st_mode) == 0o711, "the data dir is not listable"
    assert stat.S_IMODE((open_base / "local").stat().st_mode) == 0o711


@root_only
@pytest.mark.slow
def test_without_namespaces_an_unreachable_job_dir_fails_clearly(
    local_settings: Settings, tmp_path: Path
) -> None:
    local = local_settings.backends.local.model_dump() | {"sandbox_namespaces": False}
    backend = LocalBackend(Settings(data_dir=tmp_path, backends={"local": local}))
    try:
        backend.submit_training(
            job("sh-1", script(tmp_path / "s", "echo hi\n", "run.sh"), "run.sh")
        )
        status = wait_job(backend, "sh-1")
    finally:
        backend.close()
    assert status.state == JobState.FAILED
    assert "cannot reach" in (status.failure_reason or "")


INFERENCE = """
import json, os
TARGETS = json.loads(os.environ["PROBE_TARGETS"])
def model_fn(model_dir):
    return {"model_dir": model_dir}
def attempt(path):
    try:
        if os.path.isdir(path):
            return "listed: " + ",".join(sorted(os.listdir(path)))
        with open(path, "rb") as handle:
            return "read: " + handle.read(100).decode(errors="replace")
    except OSError as exc:
        return "denied: " + type(exc).__name__
def predict_fn(data, model):
    return {"uid": os.getuid(), "seen": {k: attempt(p) for k, p in TARGETS.items()},
            "env": dict(os.environ), "cwd": os.getcwd(),
            "model": open(os.path.join(model["model_dir"], "weights.txt")).read()}
"""


@root_only
@pytest.mark.slow
def test_a_replica_serves_its_model_and_reads_nothing_else(
    backend: LocalBackend, secrets: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / "model-src"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(INFERENCE)
    (model / "weights.txt").write_text("w=1")
    os.chmod(model / "weights.txt", 0o600)  # as a sandboxed job writes it
    targets = {
        **{name: str(path) for name, path in secrets.items()},
        "jobs_dir": str(backend.work_dir / "jobs"),
        "endpoints_dir": str(backend.work_dir / "endpoints"),
        "test_environ": f"/proc/{os.getpid()}/environ",
        "init_environ": "/proc/1/environ",
    }
    spec = EndpointSpec(
        endpoint_name="probe-ep",
        artifact_uri=model.as_uri(),
        instance_type="local",
        instance_count=1,
        environment={"PROBE_TARGETS": json.dumps(targets)},
    )
    backend.create_endpoint(spec)
    ready = (EndpointState.IN_SERVICE, 1)

    def serving() -> bool:
        status = backend.describe_endpoints(["probe-ep"])["probe-ep"]
        assert status.state != EndpointState.FAILED, status.failure_reason
        return (status.state, status.current_instances) == ready

    wait_for(serving, timeout=60)
    answer = json.loads(backend.invoke("probe-ep", b"{}", "application/json").body)
    assert answer["model"] == "w=1"
    assert UID <= answer["uid"] < UID + COUNT
    leaked = {k: v for k, v in answer["seen"].items() if not v.startswith("denied")}
    assert leaked.pop("endpoints_dir", "listed: probe-ep") == "listed: probe-ep"
    assert leaked == {}
    assert SECRET not in json.dumps(answer)
    assert Path(answer["env"]["HOME"]).is_relative_to(backend.work_dir / "endpoints")
    backend.delete_endpoint("probe-ep")


@root_only
@pytest.mark.parametrize("channel", ["data_dir", "work_dir", "admin_key"])
def test_an_input_channel_holding_stratus_files_is_refused(
    backend: LocalBackend, secrets: dict[str, Path], tmp_path: Path, channel: str
) -> None:
    paths = {"data_dir": tmp_path, "work_dir": backend.work_dir, "admin_key": secrets["admin_key"]}
    source = script(tmp_path / "src", "print('hi')\n")
    spec = job("chan-1", source, input_channels={"train": paths[channel].as_uri()})
    # Host roots refuse the work dir first; the sandbox refuses whatever a root still admits.
    refused = "cannot be shown to the job|not under an allowed host root"
    with pytest.raises(BackendError, match=refused) as caught:
        backend.submit_training(spec)
    assert not caught.value.retryable
    assert not (backend.work_dir / "jobs" / "chan-1").exists()


# --- metric regexes off the loop ------------------------------------------------------------

CATASTROPHIC = r"(a+)+$"
PATHOLOGICAL = """
import time
print("a" * 60 + "!", flush=True)
for step in range(1, 100000):
    print(f"step={step} value={step * 0.5}", flush=True)
    time.sleep(0.05)
"""


@pytest.mark.slow
def test_a_catastrophic_regex_is_disabled_and_stop_still_works(
    backend: LocalBackend, tmp_path: Path
) -> None:
    rules = [{"name": "bad", "regex": CATASTROPHIC}, {"name": "value", "regex": r"value=(\S+)"}]
    spec = job("regex-1", script(tmp_path / "src", PATHOLOGICAL), metric_definitions=rules)
    backend.submit_training(spec)
    wait_for(lambda: backend.fetch_training_metrics("regex-1", None).points, timeout=60)
    backend.stop_training("regex-1")
    status = wait_job(backend, "regex-1")
    assert status.state == JobState.STOPPED
    lines = backend.fetch_logs("regex-1", None, 10_000).lines
    assert any("metric 'bad' disabled" in line for line in lines)
    assert "value" in status.final_metrics


@pytest.mark.slow
def test_a_catastrophic_regex_does_not_defeat_the_runtime_limit(
    backend: LocalBackend, tmp_path: Path
) -> None:
    rules = [{"name": "bad", "regex": CATASTROPHIC}]
    many = "import time\nwhile True:\n    print('a' * 60 + '!', flush=True)\n    time.sleep(0.01)\n"
    source = script(tmp_path / "src", many)
    spec = job("regex-2", source, metric_definitions=rules, max_runtime_seconds=2)
    backend.submit_training(spec)
    status = wait_job(backend, "regex-2")
    assert status.state == JobState.FAILED
    assert "maximum runtime of 2 s" in (status.failure_reason or "")


def test_the_off_loop_scraper_disables_only_the_rule_over_budget() -> None:
    found: list[tuple[str, dict[int, list[float]]]] = []
    notes: list[str] = []
    rules = [("bad", CATASTROPHIC), ("loss", r"loss=([0-9.]+)")]
    scraper = OffLoopScraper(rules, 0.3, lambda t, _s, f: found.append((t, f)), notes.append)
    try:
        scraper.submit("loss=1.5", "t0")
        scraper.submit("a" * 60 + "!", "t1")
        scraper.submit("loss=0.5", "t2")
        scraper.drain(30)
    finally:
        scraper.close()
    assert [{rule: v for rule, v in f.items() if v} for _, f in found] == [{1: [1.5]}, {1: [0.5]}]
    assert len(notes) == 1
    assert "metric 'bad' disabled" in notes[0]


# --- production ---------------------------------------------------------------------------

PROD = {
    "env": "prod",
    "key_pepper": "p" * 32,
    "database_url": "postgresql+psycopg://u@h/db",
    "broker_url": "redis://h:6379/0",
}


def test_prod_refuses_the_local_backend_unless_acknowledged() -> None:
    with pytest.raises(ValidationError, match="ALLOW_IN_PROD=true"):
        Settings(**PROD)
    Settings(**PROD, backends={"local": {"enabled": False}})
    acknowledged = Settings(**PROD, backends={"local": {"allow_in_prod": True}})
    assert acknowledged.backends.local.enabled


# --- the network ----------------------------------------------------------------------------

NETWORK_PROBE = """
import json, os, socket, threading
def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return "refused: " + type(exc).__name__
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
threading.Thread(target=lambda: server.accept(), daemon=True).start()
ports = json.loads(os.environ["PROBE_PORTS"])
report = {name: connect(port) for name, port in ports.items()}
report["own_loopback"] = connect(server.getsockname()[1])
print("network " + json.dumps(report), flush=True)
"""


def _listening(port: int) -> bool:
    import socket  # noqa: PLC0415 - only these tests open sockets

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@root_only
@pytest.mark.slow
@pytest.mark.parametrize("network", ["none", "host"])
def test_a_jobs_network_is_its_own_unless_the_admin_says_host(
    local_settings: Settings, tmp_path: Path, network: str
) -> None:
    """With "none" the job reaches no service on the host's loopback (here PostgreSQL and Redis,
    which trust loopback), while its own loopback works; "host" is the host's network."""
    services = {"postgres": 5432, "redis": 6379}
    if not all(_listening(port) for port in services.values()):
        pytest.skip("PostgreSQL and Redis must listen on loopback for this test")
    local = local_settings.backends.local.model_dump() | {"sandbox_network": network}
    backend = LocalBackend(Settings(data_dir=tmp_path, backends={"local": local}))
    try:
        source = script(tmp_path / "net", NETWORK_PROBE)
        name = f"net-{network}"
        backend.submit_training(
            job(name, source, environment={"PROBE_PORTS": json.dumps(services)})
        )
        status = wait_job(backend, name)
        lines = backend.fetch_logs(name, None, 200).lines
    finally:
        backend.close()
    assert status.state == JobState.COMPLETED, (status.failure_reason, lines)
    report = json.loads(next(line for line in lines if "network {" in line).split("network ", 1)[1])
    assert report["own_loopback"] == "connected"
    if network == "none":
        assert report["postgres"].startswith("refused"), report
        assert report["redis"].startswith("refused"), report
        assert any("a namespace of the job's own" in line for line in lines), lines
    else:
        assert report["postgres"] == report["redis"] == "connected", report
