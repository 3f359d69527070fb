"""Endpoints on this host, seen from the backend: create, resize, delete, describe.

An endpoint is a directory ``work_dir/endpoints/<name>/`` holding the unpacked model, the
desired replica count and the registry its controller process keeps. These calls only write
intent (``desired.json``, a ``deleting`` marker) and make sure the controller runs; the
controller does the starting and stopping. A deleted endpoint leaves ``<name>.deleted``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sys
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    NotFoundError,
)
from app.backends.local import procs
from app.backends.local.files import (
    lock_held,
    now,
    read_json,
    short_lock,
    to_iso,
    write_json,
)
from app.backends.local.handler import SCRIPTS
from app.backends.local.jobs import NAME
from app.backends.local.packaging import unpack_model
from app.backends.local.replicas import MODEL_DIR, READY, EndpointConfig
from app.backends.local.sandbox import SandboxSpec
from app.hostpaths import HostRoots
from app.settings import LocalBackendSettings

DEFAULT_MODELS = ("model.joblib", "model.pkl", "model.pickle")
RELAUNCH_AFTER_S = 10.0  # a controller launched this recently may still be starting up


def _fatal(message: str) -> BackendError:
    return BackendError(message, retryable=False)


class LocalEndpoints:
    """The ``endpoints/`` directory of a local backend."""

    def __init__(
        self,
        work_dir: Path,
        settings: LocalBackendSettings,
        roots: HostRoots,
        sandbox: SandboxSpec | None = None,
    ) -> None:
        self.root = work_dir / "endpoints"
        self.settings = settings
        # Models come from under the host roots, or from this backend's own finished jobs.
        self.artifact_roots = roots.with_root(work_dir / "jobs")
        self.sandbox = sandbox

    def endpoint_dir(self, name: str) -> Path:
        """The directory of endpoint ``name``; a name that cannot be one's is refused."""
        if not NAME.match(name):
            raise _fatal(f"endpoint names must match {NAME.pattern}: {name[:80]!r}")
        return self.root / name

    def create(self, spec: EndpointSpec) -> EndpointStatus:
        """Unpack the model and start the controller; an existing endpoint is returned as is."""
        endpoint_dir = self.endpoint_dir(spec.endpoint_name)
        if spec.image:
            raise _fatal("the local backend serves model artifacts itself, not container images")
        if (endpoint_dir / "deleting").exists():
            raise BackendError(f"endpoint {spec.endpoint_name!r} is being deleted", retryable=True)
        if not endpoint_dir.exists():
            self._build(spec, endpoint_dir)
        (self.root / f"{spec.endpoint_name}.deleted").unlink(missing_ok=True)
        self._ensure_controller(endpoint_dir)
        return self._status(spec.endpoint_name, endpoint_dir)

    def _build(self, spec: EndpointSpec, endpoint_dir: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{spec.endpoint_name}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()
        try:
            self._unpack(spec.artifact_uri, staging / MODEL_DIR)
            config = EndpointConfig(
                endpoint_name=spec.endpoint_name,
                artifact_uri=spec.artifact_uri,
                environment=dict(spec.environment),
                stop_grace_s=self.settings.stop_grace_s,
                drain_timeout_s=self.settings.drain_timeout_s,
                replica_start_timeout_s=self.settings.replica_start_timeout_s,
                sandbox=self.sandbox,
                created_at=to_iso(now()),
            )
            (staging / "endpoint.json").write_text(config.model_dump_json())
            write_json(staging / "desired.json", {"count": max(0, spec.instance_count)})
            os.rename(staging, endpoint_dir)  # a concurrent create of the same name loses here
        except OSError as exc:
            if not endpoint_dir.exists():
                message = f"could not prepare the endpoint: {exc}"
                raise BackendError(message, retryable=True) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _unpack(self, artifact_uri: str, model: Path) -> None:
        """Unpack a model artifact into ``model`` and check it can be served."""
        try:
            unpack_model(artifact_uri, model, self.artifact_roots)
        except (ValueError, FileNotFoundError, tarfile.TarError) as exc:
            raise _fatal(f"cannot unpack the model artifact: {exc}") from exc
        servable = [*SCRIPTS, *DEFAULT_MODELS]
        if not any((model / name).is_file() for name in servable):
            raise _fatal(f"the model artifact holds none of {', '.join(servable)}")

    def update(self, name: str, count: int) -> EndpointStatus:
        """Set the desired replica count; the controller starts or drains replicas."""
        endpoint_dir = self._live_dir(name)
        if count < 0:
            raise _fatal(f"instance count must be 0 or more, not {count}")
        self._set_desired(endpoint_dir, count=count)
        self._ensure_controller(endpoint_dir)
        return self._status(name, endpoint_dir)

    def update_model(self, spec: EndpointSpec) -> EndpointStatus:
        """Serve another model: unpack it next to the current one, then tell the controller,
        which starts replicas of it and drains the old ones once the new ones are ready."""
        endpoint_dir = self._live_dir(spec.endpoint_name)
        model = MODEL_DIR
        config = EndpointConfig.model_validate_json((endpoint_dir / "endpoint.json").read_text())
        if config.artifact_uri != spec.artifact_uri:
            model = "model-" + hashlib.sha256(spec.artifact_uri.encode()).hexdigest()[:16]
            if not (endpoint_dir / model).is_dir():
                staging = endpoint_dir / f".{model}.{uuid.uuid4().hex[:8]}.tmp"
                try:
                    self._unpack(spec.artifact_uri, staging)
                    os.rename(staging, endpoint_dir / model)
                except OSError as exc:
                    if not (endpoint_dir / model).is_dir():
                        message = f"could not unpack the new model: {exc}"
                        raise BackendError(message, retryable=True) from exc
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        self._set_desired(endpoint_dir, count=max(0, spec.instance_count), model=model)
        self._ensure_controller(endpoint_dir)
        return self._status(spec.endpoint_name, endpoint_dir)

    def _set_desired(self, endpoint_dir: Path, **changes: object) -> None:
        """Change what the controller aims for, keeping what is not changed."""
        desired = read_json(endpoint_dir / "desired.json") or {}
        write_json(endpoint_dir / "desired.json", {**desired, **changes, "at": to_iso(now())})

    def delete(self, name: str) -> None:
        """Drain and stop every replica and the controller, then remove the endpoint's files."""
        endpoint_dir = self.endpoint_dir(name)
        if not endpoint_dir.exists():
            return
        write_json(endpoint_dir / "deleting", {"at": to_iso(now())})
        controller = read_json(endpoint_dir / "controller.json") or {}
        if procs.is_alive(controller.get("pid"), controller.get("ticks")):
            procs.signal_pid(int(controller["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + self.settings.stop_grace_s + 5
        while lock_held(endpoint_dir / "controller.lock") and time.monotonic() < deadline:
            time.sleep(0.1)
        if procs.is_alive(controller.get("pid"), controller.get("ticks")):
            procs.signal_pid(int(controller["pid"]), signal.SIGKILL)
        for entry in (read_json(endpoint_dir / "registry.json") or {}).get("replicas", []):
            if procs.is_alive(entry.get("pid"), entry.get("ticks")):
                procs.signal_group(int(entry["pid"]), signal.SIGKILL)
        write_json(self.root / f"{name}.deleted", {"deleted_at": to_iso(now())})
        trash = self.root / f".{name}.{uuid.uuid4().hex[:8]}.deleted"
        os.rename(endpoint_dir, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def describe(self, names: Sequence[str]) -> dict[str, EndpointStatus]:
        """Status of each known endpoint; restarts a controller that is not running."""
        found: dict[str, EndpointStatus] = {}
        for name in names:
            try:
                endpoint_dir = self.endpoint_dir(name)
            except BackendError:
                continue
            if endpoint_dir.exists() and not (endpoint_dir / "deleting").exists():
                self._ensure_controller(endpoint_dir)
            status = self.status(name, endpoint_dir)
            if status is not None:
                found[name] = status
        return found

    def serving_dir(self, name: str) -> Path:
        """The directory of an endpoint that can take requests (for the router)."""
        return self._live_dir(name)

    def _live_dir(self, name: str) -> Path:
        endpoint_dir = self.endpoint_dir(name)
        if not (endpoint_dir / "endpoint.json").exists():
            raise NotFoundError(f"no local endpoint named {name!r}")
        if (endpoint_dir / "deleting").exists():
            raise _fatal(f"endpoint {name!r} is being deleted")
        return endpoint_dir

    def _status(self, name: str, endpoint_dir: Path) -> EndpointStatus:
        status = self.status(name, endpoint_dir)
        if status is None:
            raise BackendError(f"endpoint {name!r} disappeared while being changed", retryable=True)
        return status

    def status(self, name: str, endpoint_dir: Path) -> EndpointStatus | None:
        """Where the endpoint stands, from its files alone."""
        if not endpoint_dir.exists():
            if (self.root / f"{name}.deleted").exists():
                return EndpointStatus(name, name, EndpointState.GONE, 0)
            return None
        registry: Mapping[str, object] = read_json(endpoint_dir / "registry.json") or {}
        replicas = registry.get("replicas")
        entries = [r for r in replicas if isinstance(r, dict)] if isinstance(replicas, list) else []
        ready = sum(r.get("state") == READY for r in entries)
        if (endpoint_dir / "deleting").exists():
            return EndpointStatus(name, name, EndpointState.DELETING, ready)
        failure = registry.get("failure")
        if isinstance(failure, str):
            return EndpointStatus(name, name, EndpointState.FAILED, ready, failure_reason=failure)
        wanted = read_json(endpoint_dir / "desired.json") or {}
        desired, model = wanted.get("count", 0), wanted.get("model") or MODEL_DIR
        rolled = all((r.get("model") or MODEL_DIR) == model for r in entries)
        if ready == desired and len(entries) == ready and rolled:
            state = EndpointState.IN_SERVICE
        elif registry.get("in_service_once"):
            state = EndpointState.UPDATING
        else:
            state = EndpointState.CREATING
        return EndpointStatus(name, name, state, ready)

    def _ensure_controller(self, endpoint_dir: Path) -> None:
        """Start the endpoint's controller unless one runs (or was started moments ago)."""
        if lock_held(endpoint_dir / "controller.lock"):
            return
        with short_lock(endpoint_dir / "launch.lock"):
            if lock_held(endpoint_dir / "controller.lock"):
                return
            launch = read_json(endpoint_dir / "launch.json") or {}
            recent = time.time() - float(launch.get("t", 0)) < RELAUNCH_AFTER_S
            if recent and procs.is_alive(launch.get("pid"), launch.get("ticks")):
                return
            argv = [sys.executable, "-m", "app.backends.local.controller", str(endpoint_dir)]
            pid = procs.spawn_detached(
                argv,
                cwd=endpoint_dir,
                log=endpoint_dir / "controller.log",
                env=procs.stratus_env(),
            )
            write_json(
                endpoint_dir / "launch.json",
                {"pid": pid, "ticks": procs.start_ticks(pid), "t": time.time()},
            )
