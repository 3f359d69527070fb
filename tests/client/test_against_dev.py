"""The laptop path against a real `stratus dev`: the CLI and the client submit a directory,
follow its log, download the model, deploy, invoke and delete it; a tracked run keeps every
point once across dropped connections; every command's exit code and JSON shape."""

from __future__ import annotations

import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import stratus
from app.cli import cli
from tests.devserver import checkout_dev
from tests.test_embedded import Dev

pytestmark = pytest.mark.slow

TRAIN = """
import argparse, json, os, pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
args, _ = parser.parse_known_args()
loss = 1.0
for epoch in range(1, args.epochs + 1):
    loss /= 2
    print(f"epoch={epoch} loss={loss}", flush=True)
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "weights.json").write_text(json.dumps({"scale": 2}))
(model / "inference.py").write_text(
    "import json, pathlib\\n"
    "def model_fn(model_dir):\\n"
    "    return json.loads((pathlib.Path(model_dir) / 'weights.json').read_text())\\n"
    "def predict_fn(data, model):\\n"
    "    return {'y': [model['scale'] * x for x in data['x']]}\\n"
)
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    with checkout_dev(tmp_path_factory.mktemp("dev")) as server:
        yield server


@pytest.fixture
def env(dev: Dev, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The dev server's URL and admin key in the environment, and a config dir of our own."""
    values = {
        "STRATUS_URL": dev.base_url,
        "STRATUS_API_KEY": (dev.data_dir / "admin-key").read_text().strip(),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


runner = CliRunner()


def _cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.stdout


def _json(*args: str) -> Any:
    return json.loads(_cli(*args, "--output", "json"))


def _code(root: Path) -> Path:
    code = root / "code"
    (code / ".git").mkdir(parents=True)
    (code / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (code / "train.py").write_text(TRAIN)
    (code / "notes.txt").write_text("not shipped\n")
    (code / ".stratusignore").write_text("notes.txt\n")
    return code


def test_laptop_path_with_the_cli_and_the_client(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # login checks the key and writes the config file; then it alone is enough.
    _cli("login", "--url", env["STRATUS_URL"], "--key", "wrong", code=1)
    monkeypatch.delenv("STRATUS_URL")
    monkeypatch.delenv("STRATUS_API_KEY")
    _cli("login", "--url", env["STRATUS_URL"], "--key", env["STRATUS_API_KEY"])
    config = Path(env["XDG_CONFIG_HOME"]) / "stratus" / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600

    project = _json("projects", "create", "laptop")
    assert project["name"] == "laptop"
    assert "laptop" in [p["name"] for p in _json("projects", "ls")]

    code = _code(tmp_path)
    result = runner.invoke(
        cli,
        [
            "runs", "submit", str(code), "--project", "laptop", "--entrypoint", "train.py",
            "--hp", "epochs=3", "--metric", "loss=loss=([0-9.]+)", "--wait",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert "epoch=3 loss=0.125" in lines
    assert lines[-1] == "loss=0.125"  # the final metrics come last

    runs = _json("runs", "ls", "--project", "laptop")
    assert [(r["status"], r["spec"]["hyperparameters"]) for r in runs] == [
        ("completed", {"epochs": 3})
    ]
    run_id = runs[0]["id"]
    assert _json("runs", "get", run_id)["final_metrics"] == {"loss": 0.125}
    assert "epoch=1 loss=0.5" in _cli("runs", "logs", run_id, "--follow").splitlines()
    assert _json("runs", "wait", run_id, "--timeout", "30")["status"] == "completed"
    _cli("runs", "stop", run_id, code=1)  # already finished: 409

    client = stratus.Client()
    run = client.runs.get(run_id)
    epochs = [line for line in run.logs() if line.startswith("epoch=")]
    assert epochs == [f"epoch={e} loss={0.5**e}" for e in (1, 2, 3)]
    assert run.wait(timeout=5).status == "completed"

    models = _json("models", "ls", "--project", "laptop")
    assert [m["source_run_id"] for m in models] == [run_id]
    assert _json("models", "get", models[0]["id"])["source_run_id"] == run_id
    saved = tmp_path / "model.tar.gz"
    assert _cli("models", "download", models[0]["id"], "-o", str(saved)).strip() == str(saved)
    with tarfile.open(saved) as archive:
        assert {"weights.json", "inference.py"} <= {Path(n).name for n in archive.getnames()}

    deployment = _json("deploy", models[0]["id"], "--name", "doubler", "--wait")
    assert (deployment["status"], deployment["current_instances"]) == ("in_service", 1)
    answer = json.loads(_cli("invoke", deployment["id"], "--data", '{"x": [1, 2]}'))
    assert answer == {"y": [2, 4]}
    request = tmp_path / "request.json"
    request.write_text('{"x": [5]}')
    assert client.invoke(deployment["id"], {"x": [5]}) == {"y": [10]}
    assert json.loads(_cli("invoke", deployment["id"], "--data", f"@{request}")) == {"y": [10]}
    assert _json("deployments", "ls", "--project", "laptop")[0]["id"] == deployment["id"]
    assert _json("deployments", "get", deployment["id"])["name"] == "doubler"
    assert isinstance(_json("decisions", deployment["id"]), list)
    scaled = _json("deployments", "scale", deployment["id"], "2")
    assert scaled["desired_instances"] == 2
    gone = _json("deployments", "delete", deployment["id"], "--wait")
    assert gone["status"] == "deleted"

    # Failures exit non-zero with the API's words on stderr.
    missing = runner.invoke(cli, ["runs", "get", "00000000-0000-7000-8000-000000000000"])
    assert missing.exit_code == 1
    assert "not found" in missing.stderr
    assert runner.invoke(cli, ["invoke", deployment["id"], "--data", "{nope"]).exit_code == 2
    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "train.py").write_text("raise SystemExit('diverged')\n")
    failed = runner.invoke(
        cli,
        ["runs", "submit", str(failing), "-p", "laptop", "-e", "train.py", "--wait"],
    )
    assert failed.exit_code == 1, failed.output
    assert "failed" in failed.stderr


class DropAfterSend(httpx.BaseTransport):
    """Every third metric batch reaches the server, which stores it, but its answer is lost."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.metric_posts = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/metrics"):
            with self.lock:
                self.metric_posts += 1
                drop = self.metric_posts % 3 == 0
            if drop:
                response.read()
                response.close()
                self.dropped += 1
                raise httpx.ReadError("connection dropped after the request was sent")
        return response

    def close(self) -> None:
        self.inner.close()


def test_tracked_run_stores_every_point_once_across_dropped_connections(
    env: dict[str, str],
) -> None:
    transport = DropAfterSend()
    client = stratus.Client(transport=transport)
    client.http.backoff.base_s = 0.05
    client.projects.create("tracking")
    started = time.monotonic()
    with client.start_run("tracking", "sweep-1", hyperparameters={"lr": 0.1}) as run:
        run.log_params({"batch_size": 64})
        for step in range(10_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            if step % 1000 == 999:
                run.flush()
    elapsed = time.monotonic() - started
    finished = client.runs.get(run.id)
    assert finished.status == "completed"
    assert finished.backend == "external"
    assert finished.spec["hyperparameters"] == {"lr": 0.1, "batch_size": 64}
    assert finished.final_metrics == {"loss": 1.0 / 10_000}
    points = client.runs.metrics(run.id, name="loss")
    assert sorted(p.step for p in points if p.step is not None) == list(range(10_000))
    assert transport.dropped >= 3
    print(  # noqa: T201
        f"10,000 points in {transport.metric_posts} posts ({transport.dropped} answers "
        f"dropped), stored once each, in {elapsed:.1f} s"
    )
    assert finished.cost_usd == 0
    listed = _json("runs", "ls", "--project", "tracking")
    assert [(r["id"], r["backend"]) for r in listed] == [(str(run.id), "external")]
    costs = client.http.request("GET", f"/v1/projects/{finished.project_id}/costs").json()
    assert costs["total_usd"] == 0

    # A block that raises fails the run with the exception's text.
    with pytest.raises(RuntimeError), client.start_run("tracking", "broken") as broken:  # noqa: PT012
        broken.log_metric("loss", 1.0)
        raise RuntimeError("diverged")
    assert client.runs.get(broken.id).failure_reason == "RuntimeError: diverged"
