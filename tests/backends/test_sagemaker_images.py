"""Image resolution: the SageMaker SDK first when installed, then the built-in table."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from app.backends.base import BackendError
from app.backends.sagemaker_images import resolve_image


@pytest.mark.parametrize(
    ("framework", "version", "instance", "scope", "uri"),
    [
        (
            "pytorch",
            "2.1",
            "ml.g4dn.xlarge",
            "training",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310",
        ),
        (
            "pytorch",
            "2.3.0",
            "ml.m5.large",
            "inference",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311",
        ),
        (
            "tensorflow",
            "2.13",
            "ml.m5.large",
            "inference",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13.0-cpu",
        ),
        (
            "sklearn",
            None,
            "ml.m5.large",
            "training",
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        ),
        (
            "xgboost",
            "1.7-1",
            "ml.m5.large",
            "training",
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        ),
    ],
)
def test_table(framework: str, version: str | None, instance: str, scope: Any, uri: str) -> None:
    assert resolve_image(framework, version, "us-east-1", instance, scope) == uri


def test_region_specific_accounts() -> None:
    assert resolve_image("pytorch", "2.1.0", "me-south-1", "ml.m5.large", "training").startswith(
        "217643126080.dkr.ecr.me-south-1."
    )
    assert resolve_image("sklearn", "1.2-1", "eu-west-1", "ml.m5.large", "training").startswith(
        "141502667606.dkr.ecr.eu-west-1."
    )


@pytest.mark.parametrize(
    ("framework", "version", "region"),
    [("pytorch", "0.4", "us-east-1"), ("mxnet", "1.9", "us-east-1"), ("pytorch", "2.1", "xx-1")],
)
def test_unknown_says_why(framework: str, version: str, region: str) -> None:
    with pytest.raises(BackendError) as caught:
        resolve_image(framework, version, region, "ml.m5.large", "training")
    assert caught.value.retryable is False
    message = str(caught.value)
    assert "sagemaker SDK is not installed" in message
    assert f"framework {framework!r} version {version!r}" in message
    assert "no entry" in message


def _fake_sdk(monkeypatch: pytest.MonkeyPatch, retrieve: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def recording(**kwargs: Any) -> str:
        seen.append(kwargs)
        return str(retrieve(**kwargs))

    package = types.ModuleType("sagemaker")
    image_uris = types.ModuleType("sagemaker.image_uris")
    image_uris.retrieve = recording  # type: ignore[attr-defined]
    package.image_uris = image_uris  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sagemaker", package)
    monkeypatch.setitem(sys.modules, "sagemaker.image_uris", image_uris)
    return seen


def test_sdk_is_asked_first(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_sdk(monkeypatch, lambda **_: "from-the-sdk")
    uri = resolve_image("pytorch", "2.1", "us-west-2", "ml.g5.xlarge", "training")
    assert uri == "from-the-sdk"
    assert seen == [
        {
            "framework": "pytorch",
            "region": "us-west-2",
            "version": "2.1.0",
            "py_version": "py310",
            "instance_type": "ml.g5.xlarge",
            "image_scope": "training",
        }
    ]


def test_sdk_failure_falls_back_to_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> str:
        raise ValueError(f"Unsupported version: {kwargs['version']}")

    _fake_sdk(monkeypatch, refuse)
    assert resolve_image("xgboost", "1.5-1", "us-east-1", "ml.m5.large", "training").endswith(
        "/sagemaker-xgboost:1.5-1"
    )
    with pytest.raises(BackendError, match=r"could not resolve it \(Unsupported version: 3"):
        resolve_image("huggingface", "3", "us-east-1", "ml.m5.large", "training")
