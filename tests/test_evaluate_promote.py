"""Evaluate, then promote, on a real `stratus dev`: train the recommender, evaluate it on the
held-out split, make it `production` behind an nDCG@10 gate, deploy by alias; a worse version
(fewer epochs) is refused by the gate; a better one moves the alias and the deployment rolls
to it under live traffic with no failed request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import demo_promote as promotion
from app.demo import Demo
from tests.devserver import checkout_dev
from tests.test_embedded import Dev

pytestmark = pytest.mark.slow
REPLICAS = 2


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    with checkout_dev(tmp_path) as server:
        yield server


def _version(demo: Demo, project: str, epochs: int, name: str) -> dict[str, Any]:
    run = demo.train(project, epochs, name)
    return demo.model_of(project, run["id"])


def test_train_evaluate_gate_deploy_by_alias_and_roll_under_load(dev: Dev) -> None:
    demo = Demo(dev.base_url, (dev.data_dir / "admin-key").read_text().strip())
    project = demo.create_project()
    base = f"/v1/projects/{project}"

    first = _version(demo, project, 8, "recommender")
    first_metrics = promotion.promote_first(demo, project, first)
    assert first_metrics["ndcg_at_10"] >= 0.2
    alias_path = f"{base}/registered-models/recommender/aliases/production"
    alias = demo._call("GET", alias_path)
    assert (alias["version"], alias["requires"]) == (1, promotion.GATE)
    evaluations = demo._call("GET", f"/v1/models/{first['id']}/evaluations")["items"]
    assert [e["status"] for e in evaluations] == ["completed"]
    logs = demo._call("GET", f"/v1/evaluations/{evaluations[0]['id']}/logs")["lines"]
    assert any(line.startswith("eval_ndcg@10=") for line in logs)

    deployment = demo.deploy(project, first["id"], REPLICAS, "recommender@production")
    assert (deployment["follows"], deployment["model_version_id"]) == (
        "recommender@production",
        first["id"],
    )

    worse = _version(demo, project, 1, "recommender-quick")
    worse_metrics = promotion.evaluate(demo, worse)
    refused = promotion.move_alias(demo, project, worse["version"])
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert f"ndcg_at_10 = {worse_metrics['ndcg_at_10']:g}" in detail
    assert "ndcg_at_10 >= 0.2" in detail
    assert demo._call("GET", alias_path)["version"] == 1

    better = _version(demo, project, 20, "recommender-long")
    better_metrics = promotion.evaluate(demo, better)
    assert better_metrics["ndcg_at_10"] > first_metrics["ndcg_at_10"]
    report = promotion.roll_under_load(demo, project, deployment["id"], better, REPLICAS)
    assert report.errors == []
    assert len(report.latencies_ms) > 50
    assert demo._call("GET", alias_path)["version"] == better["version"]
    rolled = demo._call("GET", f"/v1/deployments/{deployment['id']}")
    assert (rolled["model_version_id"], rolled["current_instances"]) == (better["id"], REPLICAS)
    answer = demo._call(
        "POST", f"/v1/deployments/{deployment['id']}/invocations", json={"user": 3, "k": 5}
    )
    assert len(answer["items"]) == 5

    ranked = demo._call(
        "GET", f"{base}/models", params={"name": "recommender", "sort": "-ndcg_at_10"}
    )["items"]
    assert [m["version"] for m in ranked] == [better["version"], 1, worse["version"]]
    served = demo._call("GET", f"{base}/models", params={"name": "recommender@production"})
    assert [m["id"] for m in served["items"]] == [better["id"]]
    demo.clean_up(project)
    print(  # noqa: T201 - the figures the test measured, for the log
        "held-out evaluation: "
        + "; ".join(
            f"v{m['version']}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(x.items()))
            for m, x in ((first, first_metrics), (worse, worse_metrics), (better, better_metrics))
        )
        + f"; {len(report.latencies_ms)} requests answered during the roll, none failed"
    )
