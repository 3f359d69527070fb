"""Train a scikit-learn classifier on the iris dataset that ships inside scikit-learn.

SageMaker script mode, like the recommender: hyperparameters as ``--name value``, the model to
``SM_MODEL_DIR``. Each epoch of SGD prints ``epoch=N loss=... accuracy=...`` (held-out
accuracy); the saved directory holds ``model.joblib`` and ``code/inference.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description="iris classifier")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.0005)
    parser.add_argument("--seed", type=int, default=7)
    args, _unknown = parser.parse_known_args()
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "model"))

    features, labels = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=args.seed, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train_s, x_test_s = scaler.transform(x_train), scaler.transform(x_test)
    classes = np.unique(labels)
    model = SGDClassifier(loss="log_loss", alpha=args.alpha, random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train_s))
        model.partial_fit(x_train_s[order], y_train[order], classes=classes)
        loss = log_loss(y_train, model.predict_proba(x_train_s), labels=classes)
        accuracy = accuracy_score(y_test, model.predict(x_test_s))
        print(f"epoch={epoch} loss={loss:.4f} accuracy={accuracy:.4f}", flush=True)

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(make_pipeline(scaler, model), model_dir / "model.joblib")
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).resolve().parent / "code" / "inference.py", code / "inference.py")
    print(f"model saved to {model_dir}", flush=True)


if __name__ == "__main__":
    main()
