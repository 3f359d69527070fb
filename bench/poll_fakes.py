"""The parts of ``poll_efficiency.py --backend NAME`` that differ for the REST clouds: the fake
cloud on a loopback port (tests/fakes/), Stratus' settings pointed at it, a mutator that moves
the fake's jobs, and a counter of the fake's API calls. Nothing here talks to a real cloud."""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.backends.contract.clouds import FAKES, INSTANCE, cloud_env
from tests.fakes.base import FakeCloud

CLOUDS = tuple(FAKES)


def spec(name: str) -> dict[str, Any]:
    """A run spec every cloud accepts: an image, a script and its code, S3-style data."""
    return {
        "image": "us-docker.pkg.dev/stratus-bench/train:1",
        "entrypoint": "train.py",
        "source_dir": "s3://stratus-bench/code.tar.gz",
        "instance_type": INSTANCE[name],
        "input_channels": {"train": "s3://stratus-bench/train/"},
        "output_location": "s3://stratus-bench/out",
        "max_runtime_seconds": 3600,
    }


@contextmanager
def fake_cloud(name: str, interval: float, jitter: float) -> Iterator[FakeCloud]:
    """The fake on a loopback port, and STRATUS_BACKENDS__<NAME>__* pointing at it."""
    fake = FAKES[name]()
    url = fake.start()
    with tempfile.TemporaryDirectory(prefix="stratus-bench-") as tmp:
        os.environ.update(cloud_env(name, url, Path(tmp)))
        prefix = f"STRATUS_BACKENDS__{name.upper()}__"
        os.environ[prefix + "POLL_INTERVAL_S"] = str(interval)
        os.environ[prefix + "POLL_JITTER_S"] = str(jitter)
        try:
            yield fake
        finally:
            fake.stop()


@dataclass
class FakeCounter:
    """The fake's API calls made while ``on``, by route (token exchanges not counted)."""

    fake: FakeCloud
    calls: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        before = Counter(self.fake.calls)
        self.calls = Counter()
        try:
            yield self.calls
        finally:
            self.calls.update(Counter(self.fake.calls) - before)


class FakeMutator(threading.Thread):
    """Touches 20 % and finishes 2 % of the running jobs at random moments of each cycle."""

    def __init__(
        self, fake: FakeCloud, start_at: float, interval: float, cycles: int, seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.fake = fake
        self.start_at, self.interval, self.cycles = start_at, interval, cycles
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
        self.finished: dict[str, float] = {}  # job name -> when it finished in the fake
        self.secondary_changes = 0

    def run(self) -> None:
        for cycle in range(self.cycles):
            begin = self.start_at + cycle * self.interval
            running = sorted(self.fake.running_names())
            picked = self.rng.sample(running, round(len(running) * 0.22))
            finishing = set(picked[: round(len(running) * 0.02)])
            for at, name in sorted((begin + self.rng.uniform(0, self.interval), n) for n in picked):
                time.sleep(max(0.0, at - time.monotonic()))
                if name in finishing:
                    self.fake.finish(name, ok=self.rng.random() < 0.8)
                    self.finished[name] = time.monotonic()
                else:
                    self.fake.touch(name)
                    self.secondary_changes += 1


def describe_all(
    name: str, backend: Any, external_ids: list[str], counter: FakeCounter
) -> tuple[float, float, int]:
    """The baseline: one GET per in-flight job (calls per job, seconds, jobs)."""
    http = backend.http
    with counter.counting() as calls:
        began = time.perf_counter()
        for external in external_ids:
            if name == "vertex":
                http.must("GET", f"/{external}")
            elif name == "azureml":
                http.must("GET", external, params=backend.version)
            else:
                http.must("GET", f"/ml/v4/trainings/{external}", params=backend.scope)
        took = time.perf_counter() - began
    return sum(calls.values()) / len(external_ids), took, len(external_ids)


def split(calls: Counter[str]) -> tuple[int, int]:
    """(list calls, other calls) of one poll."""
    lists = sum(v for k, v in calls.items() if k.endswith(".list"))
    return lists, sum(calls.values()) - lists
