"""The shipped examples' run specs: valid run specs, and the same regexes the READMEs show."""

from __future__ import annotations

import json
import re

import pytest

from app.backends.local.examples import EXAMPLES_DIR_NAMES, examples_dir, run_specs
from app.domain.runs.schemas import RunSpec


@pytest.mark.parametrize("name", EXAMPLES_DIR_NAMES)
def test_the_run_spec_is_valid_and_matches_the_readme(name: str) -> None:
    spec = run_specs()[name]
    parsed = RunSpec.model_validate(spec)
    assert parsed.source_dir is not None
    root = examples_dir()
    assert root is not None
    assert parsed.source_dir == str(root / name)
    readme = (root / name / "README.md").read_text()
    block = re.search(r"```json\n(.*?)```", readme, re.S)
    assert block is not None
    shown = json.loads(block.group(1))
    assert shown["metric_definitions"] == spec["metric_definitions"]
    assert shown["hyperparameters"] == spec["hyperparameters"]


def test_the_recommender_regexes_read_its_log_line() -> None:
    line = "epoch=3 loss=0.5235 precision@10=0.0607 recall@10=0.1283 ndcg@10=1.5e-02"
    values = {
        rule["name"]: float(re.search(rule["regex"], line).group(1))  # type: ignore[union-attr]
        for rule in run_specs()["recommender"]["metric_definitions"]
    }
    assert values == {
        "loss": 0.5235,
        "precision_at_10": 0.0607,
        "recall_at_10": 0.1283,
        "ndcg_at_10": 0.015,
    }
