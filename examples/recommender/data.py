"""Implicit-feedback interactions generated deterministically from a seed.

Users and items have hidden tastes (latent vectors) plus item popularity; each user interacts
with items drawn in proportion to how much they would like them. A model that recovers the
tastes beats the popularity baseline, which is what makes the metrics worth watching.

Run ``python data.py --out DIR`` to write ``DIR/interactions.csv`` for use as a ``train``
input channel; ``train.py`` generates the same data itself when no channel is given.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

TASTE = 2.5  # weight of personal taste against item popularity


def generate(seed: int, users: int, items: int, per_user: int = 24, dim: int = 8) -> np.ndarray:
    """(user, item) pairs, each user with between ``per_user // 2`` and ``per_user * 3 // 2``."""
    rng = np.random.default_rng(seed)
    tastes = rng.normal(size=(users, dim))
    traits = rng.normal(size=(items, dim))
    popularity = rng.normal(scale=1.0, size=items)
    scores = TASTE * tastes @ traits.T / np.sqrt(dim) + popularity
    counts = rng.integers(per_user // 2, per_user * 3 // 2 + 1, size=users)
    # Gumbel top-k: sampling without replacement in proportion to exp(score).
    keys = scores + rng.gumbel(size=scores.shape)
    order = np.argsort(-keys, axis=1)
    pairs = [(u, int(i)) for u in range(users) for i in order[u, : counts[u]]]
    return np.asarray(pairs, dtype=np.int64)


def split(pairs: np.ndarray, seed: int, holdout: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``holdout`` of each user's items (at least one) for evaluation."""
    rng = np.random.default_rng(seed + 1)
    test_mask = np.zeros(len(pairs), dtype=bool)
    for user in np.unique(pairs[:, 0]):
        rows = np.flatnonzero(pairs[:, 0] == user)
        take = max(1, int(round(len(rows) * holdout)))
        test_mask[rng.choice(rows, size=take, replace=False)] = True
    return pairs[~test_mask], pairs[test_mask]


def read_csv(path: Path) -> np.ndarray:
    """Pairs from a ``user,item`` CSV (a header row is skipped)."""
    with path.open() as handle:
        rows = [r for r in csv.reader(handle) if r and r[0].strip().isdigit()]
    return np.asarray([(int(u), int(i)) for u, i, *_ in rows], dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = generate(args.seed, args.users, args.items)
    with (args.out / "interactions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item"])
        writer.writerows(pairs.tolist())


if __name__ == "__main__":
    main()
