"""Which compute backend serves a name such as ``"local"``, ``"sagemaker"`` or ``"vertex"``.

Backends are built once per process from the settings, on first use, so a process that
never talks to SageMaker never imports boto3's SageMaker code paths.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.backends.base import Backend
from app.settings import Settings, get_settings

# name -> (module, class, enabled?)
_KNOWN: dict[str, tuple[str, str, Callable[[Settings], bool]]] = {
    "local": ("app.backends.local", "LocalBackend", lambda s: s.backends.local.enabled),
    "sagemaker": (
        "app.backends.sagemaker",
        "SageMakerBackend",
        lambda s: s.backends.sagemaker.enabled,
    ),
    "vertex": ("app.backends.vertex", "VertexBackend", lambda s: s.backends.vertex.enabled),
    "azureml": ("app.backends.azureml", "AzureMLBackend", lambda s: s.backends.azureml.enabled),
    "watsonx": ("app.backends.watsonx", "WatsonxBackend", lambda s: s.backends.watsonx.enabled),
}
# Backends whose settings group has poll_interval_s, poll_jitter_s and metrics_period_s.
_CLOUDS = ("sagemaker", "vertex", "azureml", "watsonx")
_lock = threading.Lock()
_instances: dict[str, Backend | None] = {}


def get_backend(name: str) -> Backend | None:
    """The backend registered under ``name``, or None when it is not enabled."""
    with _lock:
        if name not in _instances:
            _instances[name] = _build(name, get_settings())
        return _instances[name]


def configuration_problem(name: str, settings: Settings) -> str | None:
    """Why work on ``name`` could not run here (not enabled, settings missing), or None."""
    known = _KNOWN.get(name)
    if known is None:
        return f"there is no backend named {name!r}"
    if not known[2](settings):
        return f"the {name} backend is not enabled (STRATUS_BACKENDS__{name.upper()}__ENABLED)"
    if name in _CLOUDS[1:]:
        problem: str | None = getattr(settings.backends, name).unconfigured(name)
        return problem
    return None


def enabled_backends() -> list[str]:
    """Names of the backends this deployment of Stratus runs work on."""
    settings = get_settings()
    return [name for name, (_, _, on) in _KNOWN.items() if on(settings)]


def poll_settings(name: str) -> tuple[float, float]:
    """(interval, jitter) in seconds of a backend's pollers."""
    backends = get_settings().backends
    if name in _CLOUDS:
        cloud = getattr(backends, name)
        return float(cloud.poll_interval_s), float(cloud.poll_jitter_s)
    return backends.local.poll_interval_s, 0.0


def metrics_period_s(name: str) -> int:
    """Seconds per endpoint-metric sample pulled from a backend."""
    if name in _CLOUDS:
        return int(getattr(get_settings().backends, name).metrics_period_s)
    return 10


def _build(name: str, settings: Settings) -> Backend | None:
    known = _KNOWN.get(name)
    if known is None or not known[2](settings):
        return None
    module, cls = known[0], known[1]
    backend: Backend = getattr(importlib.import_module(module), cls)(settings)
    return backend


def reset() -> None:
    """Forget built backends (settings changed)."""
    with _lock:
        _instances.clear()


@contextmanager
def override(name: str, backend: Backend | None) -> Iterator[None]:
    """Use ``backend`` for ``name`` inside the block (tests drive a backend they built)."""
    with _lock:
        previous = _instances.get(name, ...)
        _instances[name] = backend
    try:
        yield
    finally:
        with _lock:
            if previous is ...:
                _instances.pop(name, None)
            else:
                _instances[name] = previous


def unavailable_reason(name: str, waiting: str) -> str:
    """The words recorded on an object whose work waits for a backend."""
    return f"no compute backend is configured for {name!r} yet; {waiting}"
