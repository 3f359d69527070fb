"""``stratus demo``: the whole loop against a running Stratus, through its public API only.

Create a project, upload the shipped recommender's code as a bundle (so the server need not
share this machine's files), train it on the local backend, take the model version
it produced, deploy it, send load, read the metrics back, and clean up. Every step must work
for the command to exit 0.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from app import demo_promote as promotion
from app.backends.local.examples import examples_dir, recommender_spec
from app.domain.bundles.packing import pack_directory

TERMINAL_RUN = ("completed", "failed", "stopped")


class DemoFailed(Exception):
    """A step of the demo did not work; the message says which and why."""


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo's output is for a person


@dataclass
class LoadReport:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Demo:
    """One walk through the loop; each method is a step that raises DemoFailed."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 300.0) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30.0
        )
        self.url = url
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DemoFailed(f"cannot reach Stratus at {self.url} ({exc}); is it running?") from exc
        if response.status_code >= 400:
            raise DemoFailed(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def _wait(self, what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = probe()
            if result:
                return result
            time.sleep(1.0)
        raise DemoFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def check_server(self) -> None:
        self._call("GET", "/healthz")
        self._call("GET", "/v1/projects", params={"limit": 1})

    def create_project(self) -> str:
        name = f"demo-{secrets.token_hex(3)}"
        project = self._call(
            "POST",
            "/v1/projects",
            json={"name": name, "description": "stratus demo: the recommender, end to end"},
        )
        say(f"1/9 project {name} ({project['id']})")
        return str(project["id"])

    def upload_code(self, project_id: str) -> str:
        root = examples_dir()
        if root is None:
            raise DemoFailed("the examples directory is not installed here")
        bundle = self._call(
            "POST",
            f"/v1/projects/{project_id}/code-bundles",
            content=pack_directory(root / "recommender"),
            headers={"Content-Type": "application/gzip"},
        )
        say(
            f"    code bundle {bundle['id']}: {bundle['file_count']} files, "
            f"sha256 {bundle['sha256'][:12]}…"
        )
        return str(bundle["id"])

    def train(
        self, project_id: str, epochs: int, name: str = "recommender", step: str = "2/9"
    ) -> dict[str, Any]:
        spec = recommender_spec(epochs=epochs)
        spec.pop("source_dir")
        spec["code_bundle_id"] = self.upload_code(project_id)
        spec["model_name"] = "recommender"  # every run makes a version of one registered model
        body = {"name": name, "spec": spec}
        run = self._call(
            "POST",
            f"/v1/projects/{project_id}/runs",
            json=body,
            headers={"Idempotency-Key": f"demo-run-{project_id}-{name}"},
        )
        say(f"{step} training run {run['id']} ({epochs} epochs) submitted to the local backend")
        seen = {"status": "", "points": 0}

        def progress() -> dict[str, Any] | None:
            current = self._call("GET", f"/v1/runs/{run['id']}")
            latest = self._call("GET", f"/v1/runs/{run['id']}/metrics/latest")["items"]
            values = {p["name"]: p for p in latest}
            step = max((p["step"] or 0 for p in latest), default=0)
            if current["status"] != seen["status"] or step != seen["points"]:
                shown = "  ".join(
                    f"{n}={values[n]['value']:.4f}" for n in ("loss", "ndcg_at_10") if n in values
                )
                say(f"    {current['status']:<10} epoch {step:>3}  {shown}")
                seen.update(status=current["status"], points=step)
            return current if current["status"] in TERMINAL_RUN else None

        finished: dict[str, Any] = self._wait("the training run", progress, self.timeout_s)
        if finished["status"] != "completed":
            reason = finished.get("failure_reason") or finished.get("status_reason")
            raise DemoFailed(f"the run ended {finished['status']}: {reason}")
        return finished

    def model_of(self, project_id: str, run_id: str, step: str = "3/9") -> dict[str, Any]:
        models = self._call("GET", f"/v1/projects/{project_id}/models")["items"]
        for model in models:
            if model["source_run_id"] == run_id:
                name, version, uri = model["name"], model["version"], model["artifact_uri"]
                say(f"{step} model version {name} v{version}: {uri}")
                return dict(model)
        raise DemoFailed("the completed run left no model version")

    def deploy(
        self, project_id: str, model_id: str, replicas: int, follows: str | None = None
    ) -> dict[str, Any]:
        """Deploy a model version, or (``follows``: name@alias) what an alias points at."""
        model = {"model": follows} if follows else {"model_version_id": model_id}
        body = {
            "name": "recommender",
            **model,
            "backend": "local",
            "instance_type": "local",
            "desired_instances": replicas,
            "min_instances": 1,
            "max_instances": max(4, replicas),
        }
        created = self._call(
            "POST",
            f"/v1/projects/{project_id}/deployments",
            json=body,
            headers={"Idempotency-Key": f"demo-deployment-{project_id}"},
        )
        serves = f"following {follows}" if follows else "of the version"
        say(f"4/9 deployment {created['id']} {serves}, {replicas} replicas: waiting for in_service")

        def ready() -> dict[str, Any] | None:
            current = self._call("GET", f"/v1/deployments/{created['id']}")
            if current["status"] == "failed":
                raise DemoFailed(f"the deployment failed: {current['status_reason']}")
            done = current["status"] == "in_service" and current["current_instances"] == replicas
            return current if done else None

        deployment: dict[str, Any] = self._wait("the deployment", ready, 120)
        return deployment

    def recommend(
        self, deployment_id: str, i: int, report: LoadReport, lock: threading.Lock
    ) -> None:
        """One request for 10 recommendations; its latency or its error goes in ``report``."""
        started = time.perf_counter()
        path = f"/v1/deployments/{deployment_id}/invocations"
        try:
            response = self.http.post(path, json={"user": i % 500, "k": 10})
            ok = response.status_code == 200 and len(response.json()["items"]) == 10
            error = None if ok else f"{response.status_code}: {response.text[:200]}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            error = repr(exc)
        elapsed = (time.perf_counter() - started) * 1000.0
        with lock:
            if error:
                report.errors.append(error)
            else:
                report.latencies_ms.append(elapsed)

    def send_load(self, deployment_id: str, requests: int, concurrency: int) -> LoadReport:
        report = LoadReport()
        lock = threading.Lock()

        def one(i: int) -> None:
            self.recommend(deployment_id, i, report, lock)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(requests)))
        report.seconds = time.perf_counter() - started
        tf = self._call(
            "POST",
            f"/v1/deployments/{deployment_id}/v1/models/recommender:predict",
            json={"instances": [{"user": 1, "k": 3}, {"user": 2, "k": 3}]},
        )
        if len(tf.get("predictions", [])) != 2:
            raise DemoFailed(f"the TF Serving request got {tf}")
        if report.errors:
            raise DemoFailed(
                f"{len(report.errors)} of {requests} requests failed: {report.errors[0]}"
            )
        say(
            f"5/9 {requests} requests, {concurrency} at a time: {requests / report.seconds:.0f}/s, "
            f"p50 {report.percentile(0.5):.1f} ms, p95 {report.percentile(0.95):.1f} ms "
            f"(as the client saw them, through the API); TF Serving shape answered too"
        )
        return report

    def served_metrics(self, deployment_id: str, requests: int) -> dict[str, float]:
        def pulled() -> dict[str, float] | None:
            points = self._call(
                "GET",
                f"/v1/deployments/{deployment_id}/metrics",
                params={"name": "invocations", "limit": 1000},
            )["items"]
            total = sum(p["value"] for p in points)
            if total < requests:
                return None
            latest = self._call("GET", f"/v1/deployments/{deployment_id}/metrics/latest")
            return {p["name"]: p["value"] for p in latest["items"]} | {"invocations_total": total}

        metrics: dict[str, float] = self._wait("the deployment's metrics", pulled, 90)
        say(
            f"6/9 the deployment recorded {metrics['invocations_total']:.0f} invocations; "
            f"last window: p95 {metrics.get('latency_p95_ms', float('nan')):.1f} ms, "
            f"mean {metrics.get('latency_mean_ms', float('nan')):.1f} ms at the replicas"
        )
        return metrics

    def clean_up(self, project_id: str) -> None:
        """Remove what the demo made: stop its runs, delete its deployments, then the project."""
        base = f"/v1/projects/{project_id}"
        deployments = self._call("GET", f"{base}/deployments", params={"limit": 500})["items"]
        live = [d["id"] for d in deployments if d["status"] not in ("deleting", "deleted")]
        for deployment_id in live:
            self._call("DELETE", f"/v1/deployments/{deployment_id}")
        runs = self._call("GET", f"{base}/runs", params={"limit": 500})["items"]
        for run in runs:
            if run["status"] not in (*TERMINAL_RUN, "stopping"):
                self._call("POST", f"/v1/runs/{run['id']}/stop")

        def settled() -> bool:
            runs = self._call("GET", f"{base}/runs", params={"limit": 500})["items"]
            deployments = self._call("GET", f"{base}/deployments", params={"limit": 500})
            return all(r["status"] in TERMINAL_RUN for r in runs) and all(
                d["status"] == "deleted" for d in deployments["items"]
            )

        self._wait("the demo's runs and deployments to finish", settled, 120)
        self._call("DELETE", base)


def _clean_up(demo: Demo, project_id: str | None, keep: bool) -> bool:
    """A demo leaves nothing behind unless asked to keep it; False when that failed."""
    if project_id is None or keep:
        return True
    try:
        demo.clean_up(project_id)
    except DemoFailed as failure:
        say(f"could not clean up project {project_id}: {failure}")
        return False
    return True


def run_demo(
    url: str,
    key: str,
    *,
    epochs: int = 20,
    replicas: int = 2,
    requests: int = 300,
    concurrency: int = 4,
    keep: bool = False,
) -> int:
    """The walk-through; 0 when every step worked, 1 (with the reason printed) otherwise."""
    demo = Demo(url, key)
    project_id: str | None = None
    try:
        demo.check_server()
        project_id = demo.create_project()
        run = demo.train(project_id, max(1, epochs // 2))
        final = run["final_metrics"]
        model = demo.model_of(project_id, run["id"])
        evaluated = {model["version"]: promotion.promote_first(demo, project_id, model)}
        follows = f"recommender@{promotion.ALIAS}"
        deployment = demo.deploy(project_id, model["id"], replicas, follows)
        report = demo.send_load(deployment["id"], requests, concurrency)
        demo.served_metrics(deployment["id"], requests)
        more, _roll = promotion.challengers(demo, project_id, deployment["id"], replicas, epochs)
        evaluated.update(more)
    except DemoFailed as failure:
        say(f"demo failed: {failure}")
        _clean_up(demo, project_id, keep)
        return 1
    if not _clean_up(demo, project_id, keep):
        return 1
    say("")
    say(
        "The recommender's final metrics: "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(final.items()))
    )
    for version, metrics in sorted(evaluated.items()):
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        say(f"Held-out evaluation of recommender v{version}: {shown}")
    say(
        f"Invocation latency through Stratus: p50 {report.percentile(0.5):.1f} ms, "
        f"p95 {report.percentile(0.95):.1f} ms, p99 {report.percentile(0.99):.1f} ms, "
        f"mean {statistics.fmean(report.latencies_ms):.1f} ms over {len(report.latencies_ms)}"
    )
    say(
        f"Project {project_id} and its deployment kept; delete them when done."
        if keep
        else "The demo's project, run and deployment were deleted. Demo complete."
    )
    return 0
