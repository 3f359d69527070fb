"""What the browser test looks at, made on a running `stratus dev` over its HTTP API: a project
with two finished recommender runs, a run that sleeps (to be stopped), and a deployment of the
first run's model with served metrics and optimizer decisions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from app.backends.local.examples import recommender_spec
from app.clock import utcnow
from app.db import build_engine
from app.domain.bundles.packing import pack_directory
from app.domain.optimizer.models import OptimizerDecision

SLEEPER = """
import time
import uuid
for tick in range(600):
    print(f"tick={tick}", flush=True)
    time.sleep(1)
"""


@dataclass
class Scene:
    project: dict[str, Any]
    runs: list[dict[str, Any]]  # finished, oldest first
    sleeper: dict[str, Any]
    deployment: dict[str, Any]


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 400, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def wait(self, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.call("GET", path)
            if done(current):
                return current
            assert time.monotonic() < deadline, f"timed out waiting on {path}: {current}"
            time.sleep(1)

    def bundle(self, project_id: str, root: Path) -> str:
        bundle = self.call(
            "POST",
            f"/v1/projects/{project_id}/code-bundles",
            content=pack_directory(root),
            headers={"Content-Type": "application/gzip"},
        )
        return str(bundle["id"])


def _train(api: Api, project_id: str, bundle_id: str, name: str, **hp: Any) -> dict[str, Any]:
    spec = recommender_spec(**hp)
    spec.pop("source_dir")
    spec["code_bundle_id"] = bundle_id
    return dict(
        api.call("POST", f"/v1/projects/{project_id}/runs", json={"name": name, "spec": spec})
    )


def _finished(run: dict[str, Any]) -> bool:
    assert run["status"] not in ("failed", "stopped"), run
    return bool(run["status"] == "completed")


def build(dev_url: str, key: str, data_dir: Path, workdir: Path) -> Scene:
    api = Api(dev_url, key)
    project = api.call("POST", "/v1/projects", json={"name": "console-e2e", "budget_usd": 25.0})
    pid = project["id"]
    reco = api.bundle(pid, Path(recommender_spec()["source_dir"]))
    started = [
        _train(api, pid, reco, "reco-lr-0.1", epochs=8, lr=0.1),
        _train(api, pid, reco, "reco-lr-0.05", epochs=12, lr=0.05),
    ]
    runs = [api.wait(f"/v1/runs/{r['id']}", _finished, 240) for r in started]

    sleeper_dir = workdir / "sleeper"
    sleeper_dir.mkdir()
    (sleeper_dir / "sleep.py").write_text(SLEEPER)
    spec = {"entrypoint": "sleep.py", "code_bundle_id": api.bundle(pid, sleeper_dir)}
    sleeper = api.call("POST", f"/v1/projects/{pid}/runs", json={"name": "sleeper", "spec": spec})
    sleeper = api.wait(f"/v1/runs/{sleeper['id']}", lambda r: r["status"] == "running", 120)

    models = api.call("GET", f"/v1/projects/{pid}/models")["items"]
    model = next(m for m in models if m["source_run_id"] == runs[0]["id"])
    body = {
        "name": "recommender",
        "model_version_id": model["id"],
        "backend": "local",
        "desired_instances": 1,
        "max_instances": 4,
        "scaling_policy": {"latency_slo_ms": 150},
    }
    deployment = api.call("POST", f"/v1/projects/{pid}/deployments", json=body)
    path = f"/v1/deployments/{deployment['id']}"
    deployment = api.wait(path, lambda d: d["status"] == "in_service", 120)
    _serve_history(api, deployment["id"])
    _decisions(data_dir, deployment)
    return Scene(project, runs, sleeper, deployment)


def _serve_history(api: Api, deployment_id: str) -> None:
    """An hour of served metrics: load rising, latency following, instances catching up. It
    ends before the ten minutes the backend's first pull fills in itself."""
    end = utcnow() - timedelta(minutes=11)
    points = []
    for i in range(60):
        at = (end - timedelta(minutes=60 - i)).isoformat()
        instances = 1 if i < 20 else 2 if i < 40 else 3
        load = 40 + 2 * i
        for name, value in (
            ("instances", instances),
            ("invocations", load * 10),
            ("latency_p95_ms", 40 + 1.6 * load / instances),
        ):
            points.append({"name": name, "value": float(value), "timestamp": at})
    api.call("POST", f"/v1/deployments/{deployment_id}/metrics", json={"points": points})


def _decisions(data_dir: Path, deployment: dict[str, Any]) -> None:
    """Two scale-outs and a hold, written as the optimizer writes them (its passes run once a
    minute on live traffic only, too slow to wait for here)."""
    engine = build_engine(f"sqlite:///{(data_dir / 'stratus.db').resolve()}")
    now = utcnow()
    steps = [(51, 1, 2, "scale_out"), (31, 2, 3, "scale_out"), (12, 3, 3, "hold")]
    with Session(engine) as session:
        for minutes_ago, before, after, action in steps:
            end = now - timedelta(minutes=minutes_ago)
            candidates = [
                {
                    "instances": n,
                    "load_per_instance_rps": round(100 / n, 3),
                    "predicted_p95_ms": round(40 + 160 / n, 2),
                    "predicted_mean_ms": round(20 + 60 / n, 2),
                    "efficiency": round(0.4 + 0.1 * n, 4),
                    "cost_per_hour": 0.0,
                    "feasible": 40 + 160 / n <= 150 * 0.8,
                }
                for n in range(1, 5)
            ]
            reason = (
                f"scale out {before} → {after}: predicted p95 at {before} exceeds the SLO"
                if action == "scale_out"
                else f"hold at {after}: the cheapest count that meets the SLO with headroom"
            )
            session.add(
                OptimizerDecision(
                    deployment_id=uuid.UUID(deployment["id"]),
                    project_id=uuid.UUID(deployment["project_id"]),
                    window_start=end - timedelta(hours=1),
                    window_end=end,
                    mode="model",
                    action=action,
                    previous_instances=before,
                    desired_instances=after,
                    applied=action == "scale_out",
                    reason=reason,
                    details={"candidates": candidates},
                    policy={},
                    created_at=end,
                )
            )
        session.commit()
    engine.dispose()
