"""Evaluate a trained recommender on the held-out split: nDCG@10, precision@10, recall@10.

Script mode, as for training: the model version arrives in ``SM_CHANNEL_MODEL`` (the
directory ``train.py`` saved); a ``test`` channel (``SM_CHANNEL_TEST``) with
``interactions.csv`` is used when given, otherwise the data is generated from the seed the
model was trained with and split the same way, so the held-out interactions are the ones
training never saw. It prints one line

    eval_ndcg@10=0.3100 eval_precision@10=0.1600 eval_recall@10=0.3400 users=1000

for the evaluation's metric definitions to scrape.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from data import generate, read_csv, split
from train import ranking_metrics


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a BPR recommender")
    parser.add_argument("--k", type=int, default=10)  # fixed at 10 by ranking_metrics
    args, _unknown = parser.parse_known_args()
    args.model = Path(os.environ.get("SM_CHANNEL_MODEL", "model"))
    args.test = os.environ.get("SM_CHANNEL_TEST")
    return args


def evaluate(args: argparse.Namespace) -> None:
    meta = json.loads((args.model / "meta.json").read_text())
    factors = np.load(args.model / "model.npz")
    users, items = int(meta["users"]), int(meta["items"])
    if args.test and (Path(args.test) / "interactions.csv").exists():
        pairs = read_csv(Path(args.test) / "interactions.csv")
    else:
        pairs = generate(int(meta["seed"]), users, items)
    train_pairs, test_pairs = split(pairs, int(meta["seed"]))
    scores = factors["users"] @ factors["items"].T + factors["bias"]
    precision, recall, ndcg = ranking_metrics(scores, train_pairs, test_pairs)
    print(f"model: {users} users, {items} items, {meta.get('epochs')} epochs", flush=True)
    print(
        f"eval_ndcg@10={ndcg:.4f} eval_precision@10={precision:.4f} "
        f"eval_recall@10={recall:.4f} users={users}",
        flush=True,
    )


if __name__ == "__main__":
    evaluate(parse_args())
