"""The shipped examples as run specs: what ``stratus demo`` (or a reader of the README) submits.

Each spec is a dict in the shape of ``RunSpec`` with an absolute ``source_dir``, so it works
from any working directory. The examples live in ``examples/`` next to the ``app`` package
(a checkout), or in ``<prefix>/share/stratus/examples`` when installed as data files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from app.backends.local.procs import APP_ROOT

NUMBER = r"([0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?)"

RECOMMENDER_METRICS = [
    {"name": "loss", "regex": rf"\bloss={NUMBER}"},
    {"name": "precision_at_10", "regex": rf"precision@10={NUMBER}"},
    {"name": "recall_at_10", "regex": rf"recall@10={NUMBER}"},
    {"name": "ndcg_at_10", "regex": rf"ndcg@10={NUMBER}"},
]
# What examples/recommender/evaluate.py prints for the held-out split.
RECOMMENDER_EVALUATION_METRICS = [
    {"name": "ndcg_at_10", "regex": rf"eval_ndcg@10={NUMBER}"},
    {"name": "precision_at_10", "regex": rf"eval_precision@10={NUMBER}"},
    {"name": "recall_at_10", "regex": rf"eval_recall@10={NUMBER}"},
]
IRIS_METRICS = [
    {"name": "loss", "regex": rf"\bloss={NUMBER}"},
    {"name": "accuracy", "regex": rf"\baccuracy={NUMBER}"},
]


def examples_dir() -> Path | None:
    """Where the examples are on this installation, if anywhere."""
    for candidate in (APP_ROOT / "examples", Path(sys.prefix) / "share" / "stratus" / "examples"):
        if (candidate / "recommender" / "train.py").is_file():
            return candidate
    return None


def _spec(
    example: str, metrics: list[dict[str, str]], hyperparameters: dict[str, Any]
) -> dict[str, Any]:
    root = examples_dir()
    if root is None:
        raise FileNotFoundError("the examples directory is not installed here")
    return {
        "entrypoint": "train.py",
        "source_dir": str(root / example),
        "instance_type": "local",
        "instance_count": 1,
        "max_runtime_seconds": 600,
        "hyperparameters": hyperparameters,
        "metric_definitions": metrics,
    }


def recommender_spec(**hyperparameters: Any) -> dict[str, Any]:
    """BPR matrix factorisation on seeded implicit feedback (a couple of seconds on a CPU)."""
    defaults = {"epochs": 20, "factors": 32, "lr": 0.1, "reg": 0.03, "seed": 7}
    return _spec("recommender", RECOMMENDER_METRICS, {**defaults, **hyperparameters})


def recommender_evaluation(name: str = "holdout") -> dict[str, Any]:
    """An evaluation of a recommender model version: nDCG@10, precision@10 and recall@10 on
    the held-out split (a body for POST /v1/models/{id}/evaluations)."""
    spec = _spec("recommender", RECOMMENDER_EVALUATION_METRICS, {"k": 10})
    return {
        "name": name,
        "entrypoint": "evaluate.py",
        "source_dir": spec["source_dir"],
        "hyperparameters": spec["hyperparameters"],
        "instance_type": "local",
        "instance_count": 1,
        "max_runtime_seconds": 600,
        "metric_definitions": spec["metric_definitions"],
    }


def sklearn_iris_spec(**hyperparameters: Any) -> dict[str, Any]:
    """A scikit-learn classifier on the iris data bundled with scikit-learn."""
    defaults = {"epochs": 20, "alpha": 0.0005, "seed": 7}
    return _spec("sklearn_iris", IRIS_METRICS, {**defaults, **hyperparameters})


EXAMPLES_DIR_NAMES = ("recommender", "sklearn_iris")


def run_specs() -> dict[str, dict[str, Any]]:
    """Every example's recommended run spec, by example name (its directory's name)."""
    return {"recommender": recommender_spec(), "sklearn_iris": sklearn_iris_spec()}
