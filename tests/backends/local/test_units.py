"""The local backend's pure parts, in process: scraping, cursors, the script contract, the
inference defaults, artifact packing and the endpoint-metric arithmetic."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.backends.base import ENDPOINT_METRICS
from app.backends.local import stats
from app.backends.local.contract import JobConfig, MetricRule, host_args, host_env, layout_host
from app.backends.local.files import parse_cursor, publish_json, read_lines
from app.backends.local.handler import InferenceError, InferenceHandler, _call, default_input_fn
from app.backends.local.logsink import MetricScraper
from app.backends.local.packaging import local_path, package_model
from app.backends.local.routing import _rotate
from app.hostpaths import HostRoots


def _config(**fields: object) -> JobConfig:
    base: dict[str, object] = {
        "job_name": "j",
        "entrypoint": "train.py",
        "instance_count": 2,
        "max_runtime_seconds": 10,
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    return JobConfig.model_validate({**base, **fields})


def test_scraper_takes_the_step_from_the_line_or_counts() -> None:
    rules = [
        MetricRule(name="loss", regex=r"\bloss=([0-9.eE+-]+)"),
        MetricRule(name="acc", regex=r"acc=(\S+)"),
    ]
    scraper = MetricScraper(rules)
    assert scraper.scan("epoch=3 loss=0.41 acc=0.9") == [("loss", 0.41, 3), ("acc", 0.9, 3)]
    assert scraper.scan("[Epoch 7/10] loss=1e-3") == [("loss", 0.001, 7)]
    # No counter on the line: the running count of that metric's values.
    assert scraper.scan("loss=0.5 val_loss=9") == [("loss", 0.5, 3)]
    assert scraper.scan("epochs=5 acc=nan acc=oops") == []
    assert scraper.last == {"loss": 0.5, "acc": 0.9}


def test_read_lines_leaves_a_partial_line_for_later(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\nthr")
    lines, offset = read_lines(path, 0, 10)
    assert (lines, offset) == (["one", "two"], 8)
    assert read_lines(path, offset, 10) == ([], 8)
    with path.open("ab") as handle:
        handle.write(b"ee\n")
    assert read_lines(path, offset, 10) == (["three"], 14)
    assert read_lines(tmp_path / "missing", 0, 10) == ([], 0)


def test_cursors_are_offsets() -> None:
    assert parse_cursor(None) == 0
    assert parse_cursor("120") == 120
    for bad in ("-1", "abc", "9" * 30):
        with pytest.raises(ValueError, match="not a cursor"):
            parse_cursor(bad)


def test_first_final_status_wins(tmp_path: Path) -> None:
    assert publish_json(tmp_path / "status.json", {"state": "completed"})
    assert not publish_json(tmp_path / "status.json", {"state": "failed"})
    assert json.loads((tmp_path / "status.json").read_text()) == {"state": "completed"}


def test_script_mode_environment(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("1,2\n")
    config = _config(
        hyperparameters={"epochs": 3, "lr": 0.1, "name": "x", "flag": True},
        channels={"train": str(data), "eval": str(tmp_path)},
        environment={"OMP_NUM_THREADS": "7"},
    )
    job_dir = tmp_path / "job"
    root = layout_host(job_dir, config, "algo-2")
    env = host_env(job_dir, config, "algo-2")
    assert host_args(config) == ["--epochs", "3", "--lr", "0.1", "--name", "x", "--flag", "True"]
    assert json.loads(env["SM_HPS"]) == {"epochs": 3, "lr": 0.1, "name": "x", "flag": True}
    assert env["SM_HP_EPOCHS"] == "3"
    assert env["SM_HP_NAME"] == "x"
    assert env["SM_CURRENT_HOST"] == "algo-2"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"]
    assert env["SM_MODEL_DIR"] == str(root / "model")
    assert Path(env["SM_MODEL_DIR"]).is_dir()
    assert Path(env["SM_OUTPUT_DATA_DIR"]).is_dir()
    assert int(env["SM_NUM_CPUS"]) >= 1
    assert env["OMP_NUM_THREADS"] == "7"  # the spec's environment beats the defaults
    # A file channel sits inside a directory, as on SageMaker.
    assert (Path(env["SM_CHANNEL_TRAIN"]) / "data.csv").read_text() == "1,2\n"
    assert (Path(env["SM_CHANNEL_EVAL"]) / "data.csv").exists()
    resource = json.loads((root / "input/config/resourceconfig.json").read_text())
    assert resource["current_host"] == "algo-2"


def test_local_paths_only_under_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path)
    roots = HostRoots.of([root], [root / "data" / "reserved"])
    assert local_path((root / "data").as_uri(), roots) == root / "data"
    assert local_path(str(root / "data"), roots) == root / "data"
    assert local_path(str(root / "data" / "new"), roots) == root / "data" / "new"
    for refused, message in [
        ("s3://bucket/key", "s3://"),
        ("data", "relative"),
        ("~/data", "relative"),
        (str(root / "data" / ".." / ".."), "'..'"),
        (str(root / "out"), "not under an allowed host root"),  # a link out of the root
        (str(root / "data" / "reserved" / "x"), "not under an allowed host root"),
        ("file://otherhost/srv", "this host only"),
        ("/etc/passwd", "not under an allowed host root"),
    ]:
        with pytest.raises(ValueError, match=message):
            local_path(refused, roots)
    with pytest.raises(ValueError, match="none is allowed"):
        local_path(str(root), HostRoots.of([]))
    # A root configured inside a reserved directory admits what lies under it.
    inside = HostRoots.of([root / "data" / "reserved" / "shared"], [root / "data"])
    assert inside.admits(root / "data" / "reserved" / "shared" / "x")
    assert not inside.admits(root / "data" / "reserved" / "other")


def test_model_archive_prefers_the_leader(tmp_path: Path) -> None:
    for host, text in (("algo-1", "leader"), ("algo-2", "follower")):
        model = tmp_path / "hosts" / host / "model"
        (model / "sub").mkdir(parents=True)
        (model / "weights").write_text(text)
        (model / "sub" / f"{host}.txt").write_text(host)
    config = _config(output_location=str(tmp_path / "out"))
    uri = package_model(tmp_path, config, ["algo-1", "algo-2"], empty_ok=False)
    assert uri == (tmp_path / "out" / "j" / "output" / "model.tar.gz").as_uri()
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        names = set(archive.getnames())
        weights = archive.extractfile("weights")
        assert weights is not None
        assert weights.read() == b"leader"
    assert names == {"weights", "sub", "sub/algo-1.txt", "sub/algo-2.txt"}
    empty = tmp_path / "empty"
    assert package_model(empty, _config(), ["algo-1"], empty_ok=False) is None


def test_inference_defaults(tmp_path: Path) -> None:
    assert default_input_fn(b'{"instances": [[1, 2]]}', "application/json") == [[1, 2]]
    assert default_input_fn(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert default_input_fn(b"1,2\n3,4\n", "text/csv") == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(InferenceError) as unsupported:
        default_input_fn(b"x", "image/png")
    assert unsupported.value.status == 415
    (tmp_path / "inference.py").write_text(
        "class Model:\n"
        "    def predict(self, rows):\n"
        "        return [sum(r) for r in rows]\n"
        "def model_fn(model_dir, context):\n"
        "    assert context is None\n"
        "    return Model()\n"
    )
    handler = InferenceHandler(tmp_path)
    handler.load()
    assert handler.handle(b"[[1, 2], [3, 4]]", "application/json", "application/json") == (
        b"[3, 7]",
        "application/json",
    )
    assert handler.handle(b"[[1, 2]]", "application/json", "text/csv") == (b"3\r\n", "text/csv")
    with pytest.raises(InferenceError) as bad:
        handler.handle(b"{not json", "application/json", "application/json")
    assert bad.value.status == 400
    assert _call(lambda a, b: (a, b), 1) == (1, None)


def test_endpoint_metrics_arithmetic(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    t0 = start.timestamp()
    (tmp_path / "capacity.jsonl").write_text(
        json.dumps({"t": t0 - 100, "ready": 1})
        + "\n"
        + json.dumps({"t": t0 + 5, "ready": 3})
        + "\n"
    )
    for i in range(20):  # first period: 20 fast answers
        stats.record(tmp_path, t0 + i * 0.1, 10.0 + i, 100, 200)
    stats.record(tmp_path, t0 + 3, 1.0, 50, 404)
    stats.record(tmp_path, t0 + 12, 99.0, 10, 503)
    stats.record(tmp_path, t0 + 30, 5.0, 10, 200)  # after the last whole period: not counted
    samples = stats.aggregate(tmp_path, start, datetime.fromtimestamp(t0 + 25, UTC), 10)
    by_period: dict[datetime, dict[str, float]] = {}
    for sample in samples:
        by_period.setdefault(sample.timestamp, {})[sample.name] = sample.value
    assert list(by_period) == [
        datetime.fromtimestamp(t0 + 10, UTC),
        datetime.fromtimestamp(t0 + 20, UTC),
    ]
    first, second = by_period.values()
    assert set(first) == set(ENDPOINT_METRICS)
    assert first["invocations"] == 21
    assert first["errors_4xx"] == 1
    assert first["bytes_in"] == 2050
    assert first["latency_mean_ms"] == pytest.approx(19.5)
    assert first["latency_p95_ms"] == 28.0
    assert first["instances"] == pytest.approx(2.0)  # 1 for 5 s, then 3 for 5 s
    assert first["invocations_per_instance"] == pytest.approx(10.5)
    assert second["errors_5xx"] == 1
    assert "latency_mean_ms" not in second
    assert second["instances"] == 3


def test_round_robin_rotation() -> None:
    assert _rotate([1, 2, 3], 4) == [2, 3, 1]
    assert _rotate([], 1) == []
