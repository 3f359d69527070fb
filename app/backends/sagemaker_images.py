"""Container images for a framework and version: the SageMaker SDK when installed, else a table.

The table covers the AWS Deep Learning Containers and SageMaker framework images most runs
use; anything else needs an explicit ``image`` or the optional ``sagemaker`` package.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from app.backends.base import BackendError, TrainingJobSpec

Scope = Literal["training", "inference"]

# AWS Deep Learning Containers (PyTorch, TensorFlow) registry accounts.
_DLC_DEFAULT = "763104351884"
_DLC_EXCEPTIONS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
}
_DLC_REGIONS = (
    frozenset(
        {
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-north-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
        }  # fmt: skip
    )
    | _DLC_EXCEPTIONS.keys()
)

# SageMaker's own framework images (scikit-learn, XGBoost) live in per-region accounts.
_FRAMEWORK_ACCOUNTS = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
    "ca-central-1": "341280168497",
    "sa-east-1": "737474898029",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
}

# framework -> version -> python tag of the DLC build ("" for images without one).
_VERSIONS: dict[str, dict[str, str]] = {
    "pytorch": {
        "1.13.1": "py39",
        "2.0.1": "py310",
        "2.1.0": "py310",
        "2.2.0": "py310",
        "2.3.0": "py311",
        "2.4.0": "py311",
        "2.5.1": "py311",
    },
    "tensorflow": {
        "2.11.0": "py39",
        "2.12.0": "py310",
        "2.13.0": "py310",
        "2.14.1": "py310",
        "2.16.2": "py310",
    },
    "sklearn": {"0.23-1": "py3", "1.0-1": "py3", "1.2-1": "py3"},
    "xgboost": {"1.5-1": "", "1.7-1": ""},
}
_DEFAULT_VERSION = {
    "pytorch": "2.5.1",
    "tensorflow": "2.16.2",
    "sklearn": "1.2-1",
    "xgboost": "1.7-1",
}
_ALIASES = {"scikit-learn": "sklearn", "torch": "pytorch", "tf": "tensorflow"}
_GPU_FAMILIES = ("ml.p", "ml.g")


@dataclass(frozen=True)
class _Entry:
    framework: str
    version: str
    py: str


def _entry(framework: str, version: str | None) -> _Entry | None:
    name = _ALIASES.get(framework, framework)
    versions = _VERSIONS.get(name)
    if versions is None:
        return None
    wanted = version or _DEFAULT_VERSION[name]
    if wanted not in versions:
        # "2.1" means the newest 2.1.x the table knows.
        matches = sorted(v for v in versions if v.startswith(wanted + "."))
        if not matches:
            return None
        wanted = matches[-1]
    return _Entry(name, wanted, versions[wanted])


def _from_table(entry: _Entry, region: str, instance_type: str, scope: Scope) -> str | None:
    processor = "gpu" if instance_type.startswith(_GPU_FAMILIES) else "cpu"
    if entry.framework in ("pytorch", "tensorflow"):
        if region not in _DLC_REGIONS:
            return None
        account = _DLC_EXCEPTIONS.get(region, _DLC_DEFAULT)
        tag = f"{entry.version}-{processor}"
        # TensorFlow Serving images carry no python tag.
        if not (entry.framework == "tensorflow" and scope == "inference"):
            tag += f"-{entry.py}"
        repo = f"{entry.framework}-{scope}"
    else:
        account = _FRAMEWORK_ACCOUNTS.get(region, "")
        if not account:
            return None
        if entry.framework == "sklearn":
            repo, tag = "sagemaker-scikit-learn", f"{entry.version}-cpu-{entry.py}"
        else:
            repo, tag = "sagemaker-xgboost", entry.version
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}"


def _from_sdk(
    framework: str, version: str, py: str | None, region: str, instance_type: str, scope: Scope
) -> str:
    """The SageMaker SDK's answer; ImportError when it is not installed."""
    image_uris = importlib.import_module("sagemaker.image_uris")
    uri = image_uris.retrieve(
        framework=framework,
        region=region,
        version=version,
        py_version=py or None,
        instance_type=instance_type,
        image_scope=scope,
    )
    return str(uri)


def resolve_image(
    framework: str, version: str | None, region: str, instance_type: str, scope: Scope
) -> str:
    """The image URI for ``framework`` ``version``; BackendError (not retryable) when unknown."""
    entry = _entry(framework, version)
    sdk_version = entry.version if entry else version
    try:
        if sdk_version is None:
            raise ValueError("no version given and the built-in table has no default")
        return _from_sdk(
            entry.framework if entry else framework,
            sdk_version,
            entry.py if entry else None,
            region,
            instance_type,
            scope,
        )
    except ImportError:
        sdk_said = "the sagemaker SDK is not installed"
    except Exception as exc:  # noqa: BLE001 - the SDK raises ValueError and friends
        sdk_said = f"the sagemaker SDK could not resolve it ({exc})"
    uri = _from_table(entry, region, instance_type, scope) if entry else None
    if uri is not None:
        return uri
    raise BackendError(
        f"no {scope} image for framework {framework!r} version {version or 'default'!r} "
        f"in {region}: {sdk_said} and the built-in table has no entry; "
        "give an explicit image",
        retryable=False,
    )


def job_image(spec: TrainingJobSpec, region: str) -> str:
    """The image a training or evaluation job runs in: its own, or its framework's."""
    if spec.image:
        return spec.image
    if spec.framework:
        return resolve_image(
            spec.framework, spec.framework_version, region, spec.instance_type, "training"
        )
    raise BackendError("give an image or a framework", retryable=False)
