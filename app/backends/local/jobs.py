"""Training jobs on this host, seen from the backend: submit, describe, stop, metrics and logs.

Everything here reads or writes files under ``work_dir/jobs/<job_name>/``; the supervisor
process does the running. Any process may call these, in any order, any number of times.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from app.artifacts import ArtifactMissing, ArtifactUnreadable, open_uri
from app.artifacts.archive import ArchiveRefused, BundleLimits, extract_archive, normalise
from app.backends.base import (
    BackendError,
    JobState,
    JobStatus,
    LogPage,
    MetricPage,
    NotFoundError,
    TrainingJobSpec,
    TrainingMetric,
)
from app.backends.local import procs
from app.backends.local.contract import (
    CODE_DIR,
    MODEL_CHANNEL,
    MODEL_INPUT_DIR,
    JobConfig,
    MetricRule,
)
from app.backends.local.files import (
    from_iso,
    now,
    parse_cursor,
    read_lines,
    short_lock,
    to_iso,
    write_json,
)
from app.backends.local.job_status import read_status
from app.backends.local.packaging import local_path, unpack_model
from app.backends.local.sandbox import SandboxError, SandboxSpec, check_input
from app.hostpaths import HostRoots
from app.settings import LocalBackendSettings, Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
IGNORED_SOURCES = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", ".mypy_cache")
METRICS_PAGE = 5000


def _fatal(message: str) -> BackendError:
    return BackendError(message, retryable=False)


class LocalJobs:
    """The ``jobs/`` directory of a local backend."""

    def __init__(
        self,
        work_dir: Path,
        settings: Settings,
        roots: HostRoots,
        sandbox: SandboxSpec | None = None,
    ) -> None:
        self.root = work_dir / "jobs"
        self.settings: LocalBackendSettings = settings.backends.local
        # Where code bundles are read from, and the limits they are unpacked under.
        self.artifacts = settings
        self.roots = roots
        self.sandbox = sandbox

    def job_dir(self, name: str) -> Path | None:
        """The directory of job ``name`` (None for a name that cannot be a job's)."""
        return self.root / name if NAME.match(name) else None

    # --- submit -------------------------------------------------------------------------------

    def submit(self, spec: TrainingJobSpec) -> str:
        """Create the job directory and launch its supervisor; an existing job is left as is."""
        job_dir = self.job_dir(spec.job_name)
        if job_dir is None:
            raise _fatal(f"job names must match {NAME.pattern}: {spec.job_name[:80]!r}")
        if not job_dir.exists():
            config, source = self._plan(spec)
            if spec.model_uri is not None:
                config.channels[MODEL_CHANNEL] = str(job_dir / MODEL_INPUT_DIR)
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".{spec.job_name}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                if spec.model_uri is not None:
                    self._unpack_model(spec.model_uri, staging / MODEL_INPUT_DIR)
                if source is None:
                    self._unpack(str(spec.code_uri), staging / CODE_DIR, config.entrypoint)
                else:
                    # Links are copied as links: following them here would read, with this
                    # process's rights, files the job itself may not open.
                    shutil.copytree(
                        source, staging / CODE_DIR, symlinks=True, ignore=IGNORED_SOURCES
                    )
                (staging / "job.json").write_text(config.model_dump_json())
                # Publishing with one rename: a concurrent submit of the same job loses here.
                os.rename(staging, job_dir)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if not job_dir.exists():
                    raise BackendError(f"could not prepare the job: {exc}", retryable=True) from exc
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        self._launch(job_dir)
        return spec.job_name

    def _unpack(self, code_uri: str, destination: Path, entrypoint: str) -> None:
        """The job's own copy of its code bundle, checked again as it is unpacked."""
        limits = BundleLimits(
            max_files=self.artifacts.artifacts.bundle_max_files,
            max_unpacked_bytes=self.artifacts.artifacts.bundle_max_unpacked_bytes,
        )
        try:
            stream = open_uri(code_uri, self.artifacts)
            try:
                extract_archive(stream.handle, destination, limits)
            finally:
                stream.close()
        except (ArtifactMissing, ArchiveRefused) as exc:
            raise _fatal(f"the run's code bundle cannot be used: {exc}") from exc
        except ArtifactUnreadable as exc:
            raise BackendError(f"the run's code bundle: {exc}", retryable=True) from exc
        if not (destination / entrypoint).is_file():
            raise _fatal(f"entrypoint {entrypoint} is not a file in the code bundle")

    def _unpack_model(self, model_uri: str, destination: Path) -> None:
        """An evaluation's model, unpacked for the job (it reads, never writes, it)."""
        # Models come from under the host roots, or from this backend's own finished jobs.
        try:
            unpack_model(model_uri, destination, self.roots.with_root(self.root))
        except (ValueError, FileNotFoundError, tarfile.TarError) as exc:
            raise _fatal(f"cannot unpack the model artifact: {exc}") from exc

    def _plan(self, spec: TrainingJobSpec) -> tuple[JobConfig, Path | None]:
        if spec.image:
            raise _fatal("the local backend runs script-mode entrypoints, not container images")
        if not spec.entrypoint:
            raise _fatal("the local backend needs an entrypoint")
        try:
            source: Path | None
            if spec.code_uri is not None:
                source, entrypoint = None, normalise(spec.entrypoint)
            else:
                source, entrypoint = _resolve_code(spec.source_dir, spec.entrypoint, self.roots)
            channels = {
                n: str(local_path(uri, self.roots)) for n, uri in spec.input_channels.items()
            }
            output = (
                str(local_path(spec.output_location, self.roots)) if spec.output_location else None
            )
        except ValueError as exc:
            raise _fatal(str(exc)) from exc
        missing = [f"{n} ({p})" for n, p in channels.items() if not Path(p).exists()]
        if missing:
            raise _fatal(f"input channels not found on this host: {', '.join(missing)}")
        for name, path in channels.items():
            try:
                if self.sandbox is not None:
                    check_input(self.sandbox, Path(path))
            except SandboxError as exc:
                raise _fatal(f"input channel {name!r} cannot be shown to the job: {exc}") from exc
        rules = []
        for rule in spec.metric_definitions:
            try:
                if re.compile(rule.regex).groups < 1:
                    raise re.error("no capture group")
            except re.error as exc:
                raise _fatal(f"metric {rule.name!r}: unusable regex ({exc})") from exc
            rules.append(MetricRule(name=rule.name, regex=rule.regex))
        config = JobConfig(
            job_name=spec.job_name,
            entrypoint=entrypoint,
            instance_count=max(1, spec.instance_count),
            max_runtime_seconds=max(1, spec.max_runtime_seconds),
            hyperparameters=dict(spec.hyperparameters),
            channels=channels,
            metric_definitions=rules,
            environment=dict(spec.environment),
            output_location=output,
            stop_grace_s=self.settings.stop_grace_s,
            metric_regex_timeout_s=self.settings.metric_regex_timeout_s,
            sandbox=self.sandbox,
            created_at=to_iso(now()),
        )
        return config, source

    def _launch(self, job_dir: Path) -> None:
        """Start the job's supervisor unless one was started already."""
        with short_lock(job_dir / "launch.lock"):
            if (job_dir / "launch.json").exists():
                return
            argv = [sys.executable, "-m", "app.backends.local.supervisor", str(job_dir)]
            pid = procs.spawn_detached(
                argv, cwd=job_dir, log=job_dir / "supervisor.log", env=procs.stratus_env()
            )
            write_json(
                job_dir / "launch.json",
                {"pid": pid, "ticks": procs.start_ticks(pid), "launched_at": to_iso(now())},
            )

    # --- status -------------------------------------------------------------------------------

    def describe(self, known: Mapping[str, JobState]) -> dict[str, JobStatus]:
        """The jobs of ``known`` whose state differs from it (unknown names are left out)."""
        changed: dict[str, JobStatus] = {}
        for name, state in known.items():
            status = self.status(name)
            if status is not None and status.state != state:
                changed[name] = status
        return changed

    def status(self, name: str) -> JobStatus | None:
        """Where job ``name`` stands, from its files alone; None for an unknown job."""
        job_dir = self.job_dir(name)
        if job_dir is None or not (job_dir / "job.json").exists():
            return None
        return read_status(name, job_dir, self._launch)

    def stop(self, name: str) -> None:
        """Ask the supervisor to stop the job; a finished or unknown job is left alone."""
        job_dir = self.job_dir(name)
        if job_dir is None or not job_dir.exists() or (job_dir / "status.json").exists():
            return
        write_json(job_dir / "stop", {"requested_at": to_iso(now())})

    # --- output -------------------------------------------------------------------------------

    def metrics(self, name: str, cursor: str | None) -> MetricPage:
        """Metric points scraped after ``cursor``; the next cursor is always given."""
        path = self._existing(name) / "metrics.jsonl"
        lines, offset = read_lines(path, _offset(cursor), METRICS_PAGE)
        points = []
        for line in lines:
            try:
                raw = json.loads(line)
                stamp = from_iso(raw["timestamp"]) or now()
                step = raw.get("step")
                points.append(TrainingMetric(str(raw["name"]), float(raw["value"]), stamp, step))
            except (ValueError, KeyError, TypeError):
                continue
        return MetricPage(points=points, next_cursor=str(offset))

    def logs(self, name: str, cursor: str | None, limit: int) -> LogPage:
        """Log lines after ``cursor``; no next cursor once the job has ended and all was read."""
        job_dir = self._existing(name)
        ended = (job_dir / "status.json").exists()  # written after the log is closed
        path = job_dir / "logs" / "output.log"
        lines, offset = read_lines(path, _offset(cursor), max(1, min(limit, 10_000)))
        size = path.stat().st_size if path.exists() else 0
        done = ended and offset >= size
        return LogPage(lines=lines, next_cursor=None if done else str(offset))

    def _existing(self, name: str) -> Path:
        job_dir = self.job_dir(name)
        if job_dir is None or not (job_dir / "job.json").exists():
            raise NotFoundError(f"no local training job named {name!r}")
        return job_dir


def _offset(cursor: str | None) -> int:
    try:
        return parse_cursor(cursor)
    except ValueError as exc:
        raise _fatal(str(exc)) from exc


def _resolve_code(source_dir: str | None, entrypoint: str, roots: HostRoots) -> tuple[Path, str]:
    """The directory to copy and the entrypoint relative to it."""
    if source_dir is None:
        # Never the server's working directory: code comes from a directory under a host root.
        raise ValueError("the local backend needs a source_dir holding the entrypoint")
    source = local_path(source_dir, roots)
    entry = Path(entrypoint)
    if entry.is_absolute():
        entry = Path(os.path.realpath(entry))
        if not entry.is_relative_to(source):
            raise ValueError(f"the entrypoint {entry} is outside source_dir {source}")
        entry = entry.relative_to(source)
    if not source.is_dir():
        raise ValueError(f"source_dir {source} is not a directory on this host")
    if ".." in entry.parts or not (source / entry).is_file():
        raise ValueError(f"entrypoint {entry} not found in {source}")
    return source, str(entry)
