"""A worker in a process of its own: builds the named cloud backend from the environment and
submits the job given as JSON (the parent kills it mid-submit)."""

from __future__ import annotations

import json
import sys

from app.backends.base import TrainingJobSpec
from app.settings import Settings
from tests.backends.contract.clouds import BUILD

if __name__ == "__main__":
    spec = TrainingJobSpec(**json.loads(sys.argv[2]))
    BUILD[sys.argv[1]](Settings()).submit_training(spec)
