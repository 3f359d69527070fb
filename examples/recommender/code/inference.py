"""Serve the recommender: top-k items for a user, excluding items the user has already seen.

SageMaker inference-toolkit hooks (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``),
so the same file serves on SageMaker and on Stratus's local backend. Requests (JSON):

    {"user": 7, "k": 5}                          -> {"user": 7, "items": [...], "scores": [...]}
    {"users": [1, 2], "k": 5}                    -> {"recommendations": [{...}, {...}]}
    {"instances": [{"user": 7, "k": 5}, 3]}      -> {"predictions": [{...}, {...}]}  (TF Serving)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_K = 10
MAX_K = 1000


class BadRequest(ValueError):
    """A request about something the model does not know (answered 400 where supported)."""

    status_code = 400  # read by servers that map errors to statuses (Stratus's local backend)


def model_fn(model_dir: str) -> dict[str, np.ndarray]:
    """Load the factors and each user's seen items."""
    with np.load(Path(model_dir) / "model.npz") as saved:
        return {name: saved[name] for name in saved.files}


def _request(item: Any, default_k: int) -> tuple[int, int]:
    if isinstance(item, dict):
        user, k = item.get("user"), item.get("k", default_k)
    else:
        user, k = item, default_k
    if isinstance(user, bool) or not isinstance(user, int):
        raise ValueError(f"'user' must be an integer, not {user!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"'k' must be an integer from 1 to {MAX_K}, not {k!r}")
    return user, k


def input_fn(body: bytes | str, content_type: str) -> dict[str, Any]:
    """Parse one of the three request shapes into (user, k) pairs and the answer's shape."""
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise ValueError(f"send application/json, not {content_type}")
    data = json.loads(body)
    if isinstance(data, dict) and "instances" in data:
        return {
            "shape": "predictions",
            "requests": [_request(i, DEFAULT_K) for i in data["instances"]],
        }
    if isinstance(data, dict) and "users" in data:
        k = data.get("k", DEFAULT_K)
        return {"shape": "recommendations", "requests": [_request(u, k) for u in data["users"]]}
    return {"shape": "single", "requests": [_request(data, DEFAULT_K)]}


def predict_fn(data: dict[str, Any], model: dict[str, np.ndarray]) -> dict[str, Any]:
    """Score every item for each user; the best k the user has not seen yet."""
    users, items, bias = model["users"], model["items"], model["bias"]
    answers = []
    for user, k in data["requests"]:
        if not 0 <= user < len(users):
            raise BadRequest(f"unknown user {user}; users are 0..{len(users) - 1}")
        scores = items @ users[user] + bias
        seen = model["seen_items"][model["seen_indptr"][user] : model["seen_indptr"][user + 1]]
        scores[seen] = -np.inf
        k = min(k, len(scores) - len(seen))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        answers.append(
            {"user": user, "items": top.tolist(), "scores": np.round(scores[top], 4).tolist()}
        )
    return {"shape": data["shape"], "answers": answers}


def output_fn(prediction: dict[str, Any], accept: str) -> tuple[str, str]:
    """JSON in the shape the request came in, whatever ``accept`` says."""
    del accept
    answers = prediction["answers"]
    if prediction["shape"] == "single":
        return json.dumps(answers[0]), "application/json"
    return json.dumps({prediction["shape"]: answers}), "application/json"
