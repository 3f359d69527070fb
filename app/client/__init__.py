"""The Stratus client: ``import stratus; client = stratus.Client()``.

Submit a directory and follow its run, track metrics from your own training code, download
model versions, deploy them and call them. See ``stratus --help`` for the command line.
"""

from __future__ import annotations

from .client import Client
from .config import Config
from .errors import StratusError
from .models import Bundle, Decision, Deployment, MetricPoint, ModelVersion, Project, Run, WhatIf
from .packing import pack_directory
from .tracking import TrackedRun

__all__ = [
    "Bundle",
    "Client",
    "Config",
    "Decision",
    "Deployment",
    "MetricPoint",
    "ModelVersion",
    "Project",
    "Run",
    "StratusError",
    "TrackedRun",
    "WhatIf",
    "pack_directory",
]
