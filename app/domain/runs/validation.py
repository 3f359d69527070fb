"""Everything about a run spec that can be known before it is stored: where it may run, the
host paths it names (under the admin's roots) and the S3 it names (under the project's
prefixes). A spec that passes here does not fail later for any of these reasons."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.domain.projects.schemas import BackendConfig, backend_config_of
from app.domain.runs.schemas import RunSpec
from app.errors import Unprocessable
from app.hostpaths import HostPathError, HostRoots, is_s3, settings_roots
from app.settings import Settings

SAGEMAKER_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
# A machine type as the clouds spell them: n1-standard-4, Standard_DS3_v2, S, gpu_s.
CLOUD_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLOUD_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
CLOUDS = ("vertex", "azureml", "watsonx")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
SAGEMAKER_ONLY = ("use_spot", "max_wait_seconds", "volume_size_gb")


class Problems:
    """Problems found in a request, each naming its field; raised together as one 422 whose
    ``errors`` have the shape of request validation errors (``loc``, ``msg``, ``type``)."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str, ...], str]] = []

    def add(self, field: str | tuple[str, ...], message: str) -> None:
        self.items.append((tuple(field.split(".")) if isinstance(field, str) else field, message))

    def raise_any(self, code: str = "invalid_spec") -> None:
        if self.items:
            raise Unprocessable(
                "; ".join(f"{'.'.join(loc)}: {message}" for loc, message in self.items),
                code=code,
                extra={
                    "errors": [
                        {"loc": ["body", *loc], "msg": message, "type": code}
                        for loc, message in self.items
                    ]
                },
            )


def _channel(name: str) -> tuple[str, ...]:
    return ("spec", "input_channels", name)  # channel names may hold dots


def s3_prefixes(raw_backend_config: dict[str, Any] | None) -> list[str]:
    """The S3 prefixes a project's owners allowed."""
    config: BackendConfig = backend_config_of(raw_backend_config)
    return list(config.sagemaker.s3_prefixes) if config.sagemaker else []


def check_s3_uri(
    problems: Problems, field: str | tuple[str, ...], uri: str, prefixes: list[str]
) -> None:
    """An s3://bucket/key URI under one of the project's prefixes."""
    if not S3_URI.match(uri):
        problems.add(field, "s3 URIs look like s3://bucket/key")
    elif not prefixes:
        problems.add(
            field,
            "this project allows no S3 locations yet: an owner must set "
            "backend_config.sagemaker.s3_prefixes",
        )
    elif not any(uri.startswith(prefix) for prefix in prefixes):
        problems.add(field, f"{uri!r} is not under the project's S3 prefixes {prefixes}")


def check_host_path(
    problems: Problems, field: str | tuple[str, ...], value: str, roots: HostRoots
) -> Path | None:
    """The resolved path when ``value`` is a host path under the roots; else a problem."""
    try:
        return roots.check(value)
    except HostPathError as exc:
        problems.add(field, str(exc))
        return None


def _check_local(problems: Problems, spec: RunSpec, roots: HostRoots) -> None:
    if not spec.instance_type.startswith("local"):
        problems.add("spec.instance_type", "must be 'local' on the local backend")
    if spec.image:
        problems.add(
            "spec.image", "the local backend runs script-mode entrypoints, not container images"
        )
    given = {
        "use_spot": spec.use_spot,
        "max_wait_seconds": spec.max_wait_seconds is not None,
        "volume_size_gb": "volume_size_gb" in spec.model_fields_set,
    }
    for name in SAGEMAKER_ONLY:
        if given[name]:
            problems.add(f"spec.{name}", "is a SageMaker option; the local backend refuses it")
    with _host_checks(problems, "spec"):
        _check_code(problems, spec, roots)
    for name, uri in spec.input_channels.items():
        field = _channel(name)
        if is_s3(uri):
            problems.add(field, "the local backend reads host paths, not s3:// URIs")
            continue
        with _host_checks(problems, field):
            path = check_host_path(problems, field, uri, roots)
            if path is not None and not path.exists():
                problems.add(field, f"{uri!r} does not exist on this host")
    if spec.output_location:
        with _host_checks(problems, "spec.output_location"):
            _check_output(problems, spec.output_location, roots)


@contextmanager
def _host_checks(problems: Problems, field: str | tuple[str, ...]) -> Iterator[None]:
    """Looking at the host's files can fail (a name too long, a link loop): a 422, not a 500."""
    try:
        yield
    except OSError as exc:
        problems.add(field, f"cannot be checked on this host: {exc.strerror or type(exc).__name__}")


def _check_code(problems: Problems, spec: RunSpec, roots: HostRoots) -> None:
    """source_dir under a root, holding the entrypoint as a regular file."""
    if spec.source_dir is None:
        # A code bundle (when the spec names one) is checked by the bundles service.
        if spec.code_bundle_id is None and not spec.image:
            problems.add(
                "spec.source_dir",
                "the local backend needs the code: an absolute source_dir under a host root, "
                "or a code bundle",
            )
        return
    if is_s3(spec.source_dir):
        problems.add("spec.source_dir", "the local backend reads host paths, not s3:// URIs")
        return
    source = check_host_path(problems, "spec.source_dir", spec.source_dir, roots)
    if source is None:
        return
    if not source.is_dir():
        problems.add("spec.source_dir", f"{spec.source_dir!r} is not a directory on this host")
        return
    if not spec.entrypoint:
        return
    entry = Path(spec.entrypoint)
    if ".." in entry.parts:
        problems.add("spec.entrypoint", "must not contain '..' segments")
        return
    if entry.is_absolute():
        entry = Path(os.path.realpath(entry))
        if not entry.is_relative_to(source):
            problems.add("spec.entrypoint", f"{spec.entrypoint!r} is outside source_dir")
            return
        entry = entry.relative_to(source)
    script = source / entry
    if not script.is_file():
        problems.add(
            "spec.entrypoint", f"{str(entry)!r} is not a regular file in {spec.source_dir!r}"
        )
    elif not Path(os.path.realpath(script)).is_relative_to(source):
        problems.add("spec.entrypoint", f"{str(entry)!r} links out of source_dir")


def _check_output(problems: Problems, value: str, roots: HostRoots) -> None:
    """An output directory under a root that exists or can be made there."""
    field = "spec.output_location"
    if is_s3(value):
        problems.add(field, "the local backend writes host paths, not s3:// URIs")
        return
    path = check_host_path(problems, field, value, roots)
    if path is None:
        return
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problems.add(field, f"{str(existing)!r} is not a directory")
    elif not roots.admits(existing):
        problems.add(field, "its missing directories would be created outside the host roots")
    elif not os.access(existing, os.W_OK):
        problems.add(field, f"{str(existing)!r} is not writable by Stratus")


def _check_sagemaker(problems: Problems, spec: RunSpec) -> None:
    if not SAGEMAKER_INSTANCE.match(spec.instance_type):
        problems.add("spec.instance_type", "must be a SageMaker type such as ml.m5.xlarge")
    for name, uri in spec.input_channels.items():
        field = _channel(name)
        if not is_s3(uri):
            problems.add(field, "must be an s3:// URI on sagemaker")
    if spec.output_location and not is_s3(spec.output_location):
        problems.add("spec.output_location", "must be an s3:// URI on sagemaker")
    if spec.source_dir and not is_s3(spec.source_dir):
        problems.add(
            "spec.source_dir", "must be an s3:// URI of a code archive on sagemaker, or a bundle"
        )


def _check_cloud(problems: Problems, backend: str, spec: RunSpec) -> None:
    """What a REST cloud needs to start the job: its own machine types, URIs it can read."""
    if spec.instance_type == "local" or not CLOUD_INSTANCE.match(spec.instance_type):
        problems.add("spec.instance_type", f"must be a {backend} machine type")
    if backend == "vertex" and not spec.image:
        problems.add("spec.image", "vertex runs need a container image")
    if backend == "azureml" and not spec.entrypoint:
        problems.add("spec.entrypoint", "azureml runs need an entrypoint (python <entrypoint>)")
    for name, uri in spec.input_channels.items():
        if not CLOUD_URI.match(uri):
            problems.add(_channel(name), f"must be a URI the {backend} job can read")
    for field, value in (
        ("output_location", spec.output_location),
        ("source_dir", spec.source_dir),
    ):
        if value and not CLOUD_URI.match(value):
            problems.add(f"spec.{field}", f"must be a URI the {backend} job can reach")
    if spec.code_bundle_id is not None:
        problems.add("spec.code_bundle_id", f"code bundles are not shipped to {backend} yet")


def _check_s3(problems: Problems, spec: RunSpec, prefixes: list[str]) -> None:
    """Every s3:// URI of the spec under the project's prefixes."""
    uris: list[tuple[str | tuple[str, ...], str]] = [
        (_channel(n), u) for n, u in spec.input_channels.items()
    ]
    uris += [("spec.output_location", spec.output_location or "")]
    uris += [("spec.source_dir", spec.source_dir or "")]
    for field, uri in uris:
        if is_s3(uri):
            check_s3_uri(problems, field, uri, prefixes)


def validate_run_spec(
    settings: Settings, backend: str, spec: RunSpec, project_backend_config: dict[str, Any]
) -> None:
    """Refuse, with one 422 naming every bad field, a spec that could not run as given."""
    problems = Problems()
    if backend == "sagemaker":
        _check_sagemaker(problems, spec)
        _check_s3(problems, spec, s3_prefixes(project_backend_config))
    elif backend in CLOUDS:
        _check_cloud(problems, backend, spec)
        _check_s3(problems, spec, s3_prefixes(project_backend_config))
    else:  # the local backend refuses s3:// URIs outright
        _check_local(problems, spec, settings_roots(settings))
    problems.raise_any()


def validate_artifact_uri(
    settings: Settings, uri: str, project_backend_config: dict[str, Any]
) -> None:
    """A model artifact under the project's S3 prefixes or under a host root (and there)."""
    problems = Problems()
    field = "artifact_uri"
    if is_s3(uri):
        check_s3_uri(problems, field, uri, s3_prefixes(project_backend_config))
    else:
        with _host_checks(problems, field):
            path = check_host_path(problems, field, uri, settings_roots(settings))
            if path is not None and not path.exists():
                problems.add(field, f"{uri!r} does not exist on this host")
    problems.raise_any("invalid_artifact")
