"""The SageMaker script-mode contract, mapped onto a job directory.

Each host gets a directory laid out like ``/opt/ml`` on a SageMaker instance (``model/``,
``output/data/``, ``input/config/*.json``, ``input/data/<channel>``), the ``SM_*`` variables
that point into it, and the hyperparameters both as ``--name value`` arguments and as JSON in
``SM_HPS``. A script written against this runs unchanged on SageMaker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from app.backends.base import HyperValue
from app.backends.local.sandbox import SandboxSpec

HOST_PREFIX = "algo-"
CODE_DIR = "code"
# An evaluation's model, unpacked from its artifact: the job's ``model`` channel.
MODEL_INPUT_DIR = "model-input"
MODEL_CHANNEL = "model"
SHELL_SUFFIXES = (".sh", ".bash")


class MetricRule(BaseModel):
    name: str
    regex: str


class JobConfig(BaseModel):
    """What the supervisor needs to run a job; written once into ``job.json`` at submit."""

    job_name: str
    entrypoint: str  # relative to the job's code directory
    instance_count: int = Field(ge=1)
    max_runtime_seconds: int = Field(ge=1)
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    channels: dict[str, str] = Field(default_factory=dict)  # name -> absolute local path
    metric_definitions: list[MetricRule] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    output_location: str | None = None  # a local directory that also receives the artifact
    stop_grace_s: float = 10.0
    metric_regex_timeout_s: float = 1.0
    sandbox: SandboxSpec | None = None  # None: runs as Stratus's own user (not root)
    created_at: str


def host_names(count: int) -> list[str]:
    """``algo-1`` … ``algo-N``, SageMaker's host names."""
    return [f"{HOST_PREFIX}{i}" for i in range(1, count + 1)]


def cpus_per_host(count: int) -> int:
    """This machine's CPUs shared out between the job's hosts (at least one each)."""
    return max(1, (os.cpu_count() or 1) // count)


def _hp_text(value: HyperValue) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _input_data_config(config: JobConfig) -> dict[str, dict[str, str]]:
    return {name: {"TrainingInputMode": "File"} for name in config.channels}


def layout_host(job_dir: Path, config: JobConfig, host: str) -> Path:
    """Create ``host``'s ``/opt/ml``-like directory and its input config files; returns it."""
    root = job_dir / "hosts" / host
    for sub in ("model", "output/data", "input/config", "input/data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    hosts = host_names(config.instance_count)
    files = {
        "hyperparameters.json": {k: _hp_text(v) for k, v in config.hyperparameters.items()},
        "resourceconfig.json": {
            "current_host": host,
            "hosts": hosts,
            "network_interface_name": "lo",
        },
        "inputdataconfig.json": _input_data_config(config),
    }
    for name, data in files.items():
        (root / "input" / "config" / name).write_text(json.dumps(data))
    for name, source in config.channels.items():
        link = root / "input" / "data" / name
        if link.is_symlink() or link.exists():
            continue
        path = Path(source)
        if path.is_dir():
            link.symlink_to(path, target_is_directory=True)
        else:  # a channel is always a directory on SageMaker; a single file sits inside one
            link.mkdir()
            (link / path.name).symlink_to(path)
    return root


def host_env(job_dir: Path, config: JobConfig, host: str) -> dict[str, str]:
    """The ``SM_*`` variables of one host, over ``config.environment``."""
    root = job_dir / "hosts" / host
    hosts = host_names(config.instance_count)
    cpus = cpus_per_host(config.instance_count)
    channel_dirs = {name: str(root / "input" / "data" / name) for name in config.channels}
    args = host_args(config)
    training_env = {
        "job_name": config.job_name,
        "current_host": host,
        "hosts": hosts,
        "hyperparameters": dict(config.hyperparameters),
        "channel_input_dirs": channel_dirs,
        "model_dir": str(root / "model"),
        "output_data_dir": str(root / "output" / "data"),
        "num_cpus": cpus,
        "num_gpus": 0,
        "user_entry_point": config.entrypoint,
        "module_dir": str(job_dir / CODE_DIR),
    }
    env = {
        # Threaded math libraries would otherwise each grab every core of the shared host.
        "OMP_NUM_THREADS": str(cpus),
        "OPENBLAS_NUM_THREADS": str(cpus),
        "MKL_NUM_THREADS": str(cpus),
        **config.environment,
        "PYTHONUNBUFFERED": "1",
        "TRAINING_JOB_NAME": config.job_name,
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_INPUT_DATA_CONFIG": json.dumps(_input_data_config(config)),
        "SM_CHANNELS": json.dumps(sorted(config.channels)),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": host,
        "SM_NUM_CPUS": str(cpus),
        "SM_NUM_GPUS": "0",
        "SM_NETWORK_INTERFACE_NAME": "lo",
        "SM_RESOURCE_CONFIG": json.dumps({"current_host": host, "hosts": hosts}),
        "SM_HPS": json.dumps(dict(config.hyperparameters)),
        "SM_USER_ARGS": json.dumps(args),
        "SM_USER_ENTRY_POINT": config.entrypoint,
        "SM_MODULE_DIR": str(job_dir / CODE_DIR),
        "SM_LOG_LEVEL": "20",
        "SM_TRAINING_ENV": json.dumps(training_env),
    }
    for name, path in channel_dirs.items():
        env[f"SM_CHANNEL_{name.upper().replace('-', '_').replace('.', '_')}"] = path
    for name, value in config.hyperparameters.items():
        env[f"SM_HP_{name.upper().replace('-', '_').replace('.', '_')}"] = _hp_text(value)
    return env


def host_args(config: JobConfig) -> list[str]:
    """Hyperparameters as SageMaker passes them: ``--name value`` (booleans as True/False)."""
    args: list[str] = []
    for name, value in config.hyperparameters.items():
        args += [f"--{name}", str(value)]
    return args


def host_command(job_dir: Path, config: JobConfig) -> list[str]:
    """How to run the entrypoint: Python scripts with this interpreter, shell scripts with sh."""
    script = job_dir / CODE_DIR / config.entrypoint
    if script.suffix == ".py":
        head = [sys.executable, str(script)]
    elif script.suffix in SHELL_SUFFIXES:
        head = ["/bin/sh", str(script)]
    else:
        head = [str(script)]
    return [*head, *host_args(config)]
