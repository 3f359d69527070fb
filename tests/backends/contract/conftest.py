"""The contract every backend passes: one ``harness`` fixture, parametrized over local,
SageMaker (moto) and the fake Vertex AI, Azure ML and watsonx.ai servers."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff

from app.backends.local import LocalBackend
from app.settings import Settings
from tests.backends.conftest import make_backend
from tests.backends.contract.aws_local import LocalHarness, SageMakerHarness
from tests.backends.contract.clouds import FAKES, CloudHarness, cloud_env
from tests.backends.local.conftest import (  # noqa: F401 - fixtures the local harness uses
    backend,
    local_settings,
)

BACKENDS = ["local", "sagemaker", "vertex", "azureml", "watsonx"]
CLOUDS = ["vertex", "azureml", "watsonx"]
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def local_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalHarness]:
    """The local backend (its fixture kills and reaps what it started), this process as init."""
    if sys.platform != "linux":
        pytest.skip("the local backend's process handling is tested on Linux")
    local: LocalBackend = request.getfixturevalue("backend")
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield LocalHarness(local, tmp_path / "src")
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Any:
    """Each backend in turn, behind the same harness surface."""
    name = request.param
    if name == "local":
        return request.getfixturevalue("local_harness")
    if name == "sagemaker":
        request.getfixturevalue("aws")
        moto_sm = request.getfixturevalue("moto_sm")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda *_: 0)
        return SageMakerHarness(make_backend(), moto_sm)
    return _cloud(request, name)


def _cloud(request: pytest.FixtureRequest, name: str) -> CloudHarness:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    fake = FAKES[name]()
    url = fake.start()
    request.addfinalizer(fake.stop)
    for key, value in cloud_env(name, url, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("STRATUS_BROKER_URL", raising=False)
    harness = CloudHarness(name, fake, Settings())
    request.addfinalizer(harness.close)
    return harness


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest) -> CloudHarness:
    """Each REST cloud on its fake."""
    return _cloud(request, request.param)
