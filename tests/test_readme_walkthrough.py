"""The README's API walk-through, executed as written (twice in a row) against `stratus dev`."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devserver import REPO, checkout_dev
from tests.test_embedded import Dev

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    """The shell block under "A walk through the API"."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## A walk through the API") :]
    found = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert found, "the walk-through has no sh block"
    return found.group(1)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    with checkout_dev(tmp_path) as server:
        yield server


def test_the_walkthrough_runs_twice_in_a_row(dev: Dev, tmp_path: Path) -> None:
    script = walkthrough()
    env = {**os.environ, "STRATUS_URL": dev.base_url}
    for attempt in (1, 2):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"attempt {attempt}:\n{output}\n{dev.logs()}"
        assert re.search(r"run \S+ is completed", output), output
        assert "idempotent-replayed: true" in output.lower(), output
        assert '"ndcg_at_10"' in output, output
        assert '"step": 5' in output, output
        assert '"status": "completed"' in output, output
        # Metrics are one point per scrape: the demo series never shows a step-less "epoch 0".
        assert '"step": null' not in output, output
