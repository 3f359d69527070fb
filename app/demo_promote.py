"""The evaluate-then-promote steps of ``stratus demo``: evaluate each trained version on the
held-out split, gate the ``production`` alias on nDCG@10, deploy by alias, see a worse
version refused, and move the alias to a better one under live traffic."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from app.backends.local.examples import recommender_evaluation

if TYPE_CHECKING:
    from app.demo import Demo, LoadReport

TERMINAL = ("completed", "failed", "stopped")
ALIAS = "production"


def evaluate(demo: Demo, model: dict[str, Any]) -> dict[str, float]:
    """Run the recommender's evaluate.py on a model version; its final metrics."""
    from app.demo import DemoFailed, say

    body = recommender_evaluation(f"holdout-v{model['version']}")
    body.pop("source_dir")
    body["code_bundle_id"] = demo.upload_code(model["project_id"])
    created = demo._call(
        "POST",
        f"/v1/models/{model['id']}/evaluations",
        json=body,
        headers={"Idempotency-Key": f"demo-evaluation-{model['id']}"},
    )

    def finished() -> dict[str, Any] | None:
        current: dict[str, Any] = demo._call("GET", f"/v1/evaluations/{created['id']}")
        return current if current["status"] in TERMINAL else None

    done: dict[str, Any] = demo._wait("the evaluation", finished, demo.timeout_s)
    if done["status"] != "completed":
        reason = done.get("failure_reason") or done.get("status_reason")
        raise DemoFailed(f"the evaluation ended {done['status']}: {reason}")
    metrics: dict[str, float] = done["final_metrics"]
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    say(f"    evaluation of v{model['version']} on the held-out split: {shown}")
    return metrics


def move_alias(
    demo: Demo, project_id: str, version: int, requires: dict[str, Any] | None = None
) -> httpx.Response:
    """PUT the ``production`` alias of the recommender (the answer, refused or not)."""
    body: dict[str, Any] = {"version": version}
    if requires is not None:
        body["requires"] = requires
    path = f"/v1/projects/{project_id}/registered-models/recommender/aliases/{ALIAS}"
    return demo.http.put(path, json=body)


def roll_under_load(
    demo: Demo, project_id: str, deployment_id: str, model: dict[str, Any], replicas: int
) -> LoadReport:
    """Move the alias to ``model`` while requests flow; wait until the deployment serves
    it with ``replicas`` ready replicas (and the old ones drained); what the clients saw."""
    from app.demo import DemoFailed, LoadReport

    report, stop, lock = LoadReport(), threading.Event(), threading.Lock()

    def load() -> None:
        i = 0
        while not stop.is_set():
            demo.recommend(deployment_id, i, report, lock)
            i += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # traffic first, then the move
        since = _last_event_id(demo, project_id, deployment_id)
        moved = move_alias(demo, project_id, int(model["version"]))
        if moved.status_code != 200:
            raise DemoFailed(f"moving {ALIAS} answered {moved.status_code}: {moved.text}")
        _wait_rolled(demo, project_id, deployment_id, (model["id"], replicas), since)
        time.sleep(1.0)  # and a little traffic on the new replicas alone
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    report.seconds = time.perf_counter() - started
    return report


def _last_event_id(demo: Demo, project_id: str, deployment_id: str) -> int:
    """The newest event about the deployment (0 if none): the roll's events come after it."""
    page = demo._call(
        "GET",
        f"/v1/projects/{project_id}/events",
        params={"subject_id": deployment_id, "limit": 1},
    )
    return max((int(e["id"]) for e in page["items"]), default=0)


def _wait_rolled(
    demo: Demo, project_id: str, deployment_id: str, target: tuple[str, int], since: int
) -> None:
    """Until the deployment went to ``updating`` for the roll (read from its events after
    ``since``, so a quick roll between two looks is not missed) and is back in service with
    the model and replica count of ``target`` (the old replicas drained)."""
    from app.demo import DemoFailed

    model_id, replicas = target
    deadline, rolling = time.monotonic() + 180.0, False
    while time.monotonic() < deadline:
        if not rolling:
            page = demo._call(
                "GET",
                f"/v1/projects/{project_id}/events",
                params={"subject_id": deployment_id, "type": "deployment.updating"},
            )
            rolling = any(int(e["id"]) > since for e in page["items"])
        current = demo._call("GET", f"/v1/deployments/{deployment_id}")
        if current["status"] == "failed":
            raise DemoFailed(f"the deployment failed: {current['status_reason']}")
        if (
            rolling
            and current["model_version_id"] == model_id
            and current["status"] == "in_service"
            and current["current_instances"] == replicas
        ):
            return
        time.sleep(0.2)
    raise DemoFailed("timed out after 180 s waiting for the deployment to roll")


GATE = {"ndcg_at_10": {">=": 0.2}}


def promote_first(demo: Demo, project_id: str, model: dict[str, Any]) -> dict[str, float]:
    """Evaluate the first version and make it ``production``, gated on nDCG@10."""
    from app.demo import DemoFailed, say

    metrics = evaluate(demo, model)
    answer = move_alias(demo, project_id, int(model["version"]), GATE)
    if answer.status_code != 200:
        raise DemoFailed(f"setting {ALIAS} answered {answer.status_code}: {answer.text}")
    say(f"    recommender@{ALIAS} -> v{model['version']}, requiring ndcg_at_10 >= 0.2")
    return metrics


def challengers(
    demo: Demo, project_id: str, deployment_id: str, replicas: int, epochs: int
) -> tuple[dict[int, dict[str, float]], LoadReport]:
    """A worse version (1 epoch) the gate refuses, then a better one (``epochs``) the alias
    moves to under live traffic; each version's evaluation metrics, and the roll's load."""
    from app.demo import DemoFailed, say

    evaluated: dict[int, dict[str, float]] = {}
    worse = demo.model_of(project_id, demo.train(project_id, 1, "recommender-quick", "7/9")["id"])
    evaluated[worse["version"]] = evaluate(demo, worse)
    refused = move_alias(demo, project_id, int(worse["version"]))
    if refused.status_code != 409:
        raise DemoFailed(f"the gate let v{worse['version']} through: {refused.text}")
    say(f"    moving {ALIAS} to v{worse['version']} refused: {refused.json()['detail']}")
    better = demo.model_of(
        project_id, demo.train(project_id, epochs, "recommender-long", "8/9")["id"], "   "
    )
    evaluated[better["version"]] = evaluate(demo, better)
    report = roll_under_load(demo, project_id, deployment_id, better, replicas)
    if report.errors:
        raise DemoFailed(
            f"{len(report.errors)} requests failed while the deployment rolled: {report.errors[0]}"
        )
    say(
        f"9/9 {ALIAS} moved to v{better['version']}; the deployment rolled over with "
        f"{len(report.latencies_ms)} requests answered and none failed"
    )
    return evaluated, report
