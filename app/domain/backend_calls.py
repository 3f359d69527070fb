"""A request's call to a compute backend, as the API answers it: the backend a resource names,
and a backend's failure as 503 (retry later) or 502 (it refused)."""

from __future__ import annotations

from app.backends.base import Backend, BackendError
from app.backends.registry import get_backend, metrics_period_s
from app.errors import AppError, BadGateway, Conflict, ServiceUnavailable


def backend_named(name: str) -> Backend:
    """The configured backend ``name``; 409 when it is not enabled here."""
    backend = get_backend(name)
    if backend is None:
        raise Conflict(f"No compute backend is configured for {name!r}.", code="no_backend")
    return backend


def http_error(error: BackendError) -> AppError:
    """The answer to a backend's failure: 503 with Retry-After when it may pass, else 502."""
    if error.retryable:
        return ServiceUnavailable(str(error), headers={"Retry-After": "1"})
    return BadGateway(str(error))


def metrics_period(backend: str) -> float:
    """Seconds each of the backend's serving metric points covers."""
    return float(metrics_period_s(backend))
