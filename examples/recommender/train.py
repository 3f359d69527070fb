"""Train an implicit-feedback recommender: matrix factorisation with the BPR loss, in numpy.

SageMaker script mode: hyperparameters arrive as ``--name value``; the model goes to
``SM_MODEL_DIR``; a ``train`` channel (``SM_CHANNEL_TRAIN``) with ``interactions.csv`` is
used when given, otherwise the data is generated from ``--seed``. Each epoch prints one line

    epoch=3 loss=0.4100 precision@10=0.1200 recall@10=0.3000 ndcg@10=0.2100

for the run's metric definitions to scrape. The saved model directory is self-contained:
``model.npz``, ``meta.json`` and ``code/inference.py`` for serving.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from data import generate, read_csv, split

K = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BPR matrix factorisation")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--reg", type=float, default=0.03)
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    # Unknown arguments are ignored: some SageMaker estimators add their own (TensorFlow's
    # --model_dir is an S3 URI, which is why the model directory comes from SM_MODEL_DIR).
    args, _unknown = parser.parse_known_args()
    args.model_dir = os.environ.get("SM_MODEL_DIR", "model")
    args.train = os.environ.get("SM_CHANNEL_TRAIN")
    return args


def load_pairs(args: argparse.Namespace) -> tuple[np.ndarray, int, int]:
    """The interactions, and the number of users and items."""
    if args.train and (Path(args.train) / "interactions.csv").exists():
        pairs = read_csv(Path(args.train) / "interactions.csv")
        return pairs, int(pairs[:, 0].max()) + 1, int(pairs[:, 1].max()) + 1
    return generate(args.seed, args.users, args.items), args.users, args.items


def ranking_metrics(
    scores: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[float, float, float]:
    """precision@K, recall@K and nDCG@K over users with held-out items; seen items excluded."""
    scores = scores.copy()
    scores[train[:, 0], train[:, 1]] = -np.inf
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[test[:, 0], test[:, 1]] = True
    hits = np.take_along_axis(relevant, top, axis=1)
    n_relevant = relevant.sum(axis=1)
    users = n_relevant > 0
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.array([discounts[: min(n, K)].sum() for n in n_relevant])
    precision = hits.sum(axis=1)[users] / K
    recall = hits.sum(axis=1)[users] / n_relevant[users]
    ndcg = dcg[users] / ideal[users]
    return float(precision.mean()), float(recall.mean()), float(ndcg.mean())


def train(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    pairs, n_users, n_items = load_pairs(args)
    train_pairs, test_pairs = split(pairs, args.seed)
    seen = np.zeros((n_users, n_items), dtype=bool)
    seen[train_pairs[:, 0], train_pairs[:, 1]] = True
    print(
        f"data: {n_users} users, {n_items} items, {len(train_pairs)} train / "
        f"{len(test_pairs)} held-out interactions",
        flush=True,
    )

    popularity = np.bincount(train_pairs[:, 1], minlength=n_items).astype(float)
    base = ranking_metrics(np.tile(popularity, (n_users, 1)), train_pairs, test_pairs)
    print("popularity baseline: p@10 {:.4f}  r@10 {:.4f}  nDCG@10 {:.4f}".format(*base), flush=True)

    users = rng.normal(scale=0.1, size=(n_users, args.factors))
    items = rng.normal(scale=0.1, size=(n_items, args.factors))
    bias = np.zeros(n_items)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train_pairs))
        losses = []
        for start in range(0, len(order), args.batch_size):
            batch = train_pairs[order[start : start + args.batch_size]]
            u, i = batch[:, 0], batch[:, 1]
            j = rng.integers(0, n_items, size=len(batch))
            clash = seen[u, j]  # a sampled "negative" the user did interact with: draw again
            j[clash] = rng.integers(0, n_items, size=int(clash.sum()))
            pu, qi, qj = users[u], items[i], items[j]
            x = (pu * (qi - qj)).sum(axis=1) + bias[i] - bias[j]
            losses.append(np.logaddexp(0.0, -x).mean())
            g = (1.0 / (1.0 + np.exp(x)))[:, None]  # d/dx of log sigmoid(x)
            np.add.at(users, u, args.lr * (g * (qi - qj) - args.reg * pu))
            np.add.at(items, i, args.lr * (g * pu - args.reg * qi))
            np.add.at(items, j, args.lr * (-g * pu - args.reg * qj))
            np.add.at(bias, i, args.lr * (g[:, 0] - args.reg * bias[i]))
            np.add.at(bias, j, args.lr * (-g[:, 0] - args.reg * bias[j]))
        scores = users @ items.T + bias
        p, r, n = ranking_metrics(scores, train_pairs, test_pairs)
        print(
            f"epoch={epoch} loss={np.mean(losses):.4f} precision@10={p:.4f} "
            f"recall@10={r:.4f} ndcg@10={n:.4f}",
            flush=True,
        )

    save(args, users, items, bias, pairs, {"precision@10": p, "recall@10": r, "ndcg@10": n})
    print(
        f"trained in {time.perf_counter() - started:.1f} s; model saved to {args.model_dir}",
        flush=True,
    )


def save(
    args: argparse.Namespace,
    users: np.ndarray,
    items: np.ndarray,
    bias: np.ndarray,
    pairs: np.ndarray,
    metrics: dict[str, float],
) -> None:
    """The factors, every item each user has seen (excluded when recommending), the code."""
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    indptr = np.searchsorted(pairs[:, 0], np.arange(len(users) + 1))
    np.savez(
        model_dir / "model.npz",
        users=users,
        items=items,
        bias=bias,
        seen_indptr=indptr,
        seen_items=pairs[:, 1],
    )
    meta = {
        "users": len(users),
        "items": len(items),
        "factors": args.factors,
        "epochs": args.epochs,
        "seed": args.seed,
        "metrics": metrics,
    }
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    # SageMaker's framework containers look for code/inference.py inside the model archive.
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).resolve().parent / "code" / "inference.py", code / "inference.py")


if __name__ == "__main__":
    train(parse_args())
