"""Serve the iris classifier. Only ``model_fn`` is defined: the default ``input_fn`` (JSON rows
of four measurements), ``predict_fn`` (``model.predict``) and ``output_fn`` (JSON) do the rest,
on SageMaker's scikit-learn container and on Stratus's local backend alike. (The local
backend's default ``input_fn`` also unwraps TF Serving's ``{"instances": [...]}``.)
"""

from __future__ import annotations

import os
from typing import Any

import joblib


def model_fn(model_dir: str) -> Any:
    """The fitted pipeline (scaler and classifier)."""
    return joblib.load(os.path.join(model_dir, "model.joblib"))
