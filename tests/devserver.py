"""`stratus dev` in a directory laid out like a checkout (``.stratus/`` and ``examples/``), for
tests that use Stratus as a new user would, over HTTP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.test_embedded import (
    STARTUP_DEADLINE_S,
    Dev,
    _free_port,
    _stratus,
    _wait_for,
    stop_local_replicas,
)

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def checkout_dev(workdir: Path) -> Iterator[Dev]:
    """Start `stratus dev` in ``workdir`` (with the repository's examples linked in), with none
    of the caller's STRATUS_* settings; stopped on exit."""
    (workdir / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    port = _free_port()
    out, err = workdir / "dev.out", workdir / "dev.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [*_stratus(), "dev", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    server = Dev(popen, f"http://127.0.0.1:{port}", workdir / ".stratus", out, err)
    try:
        _wait_for("/docs", server.serves_docs, STARTUP_DEADLINE_S, server)
        yield server
    finally:
        server.stop()
        stop_local_replicas(server.data_dir)
