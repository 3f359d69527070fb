"""PostgreSQL lost mid-load: a real `stratus api` process talks to the database through a TCP
proxy this test cuts and restores (the shared server itself keeps running for everyone else).

While cut, invocations to a deployment already in service keep being answered from the API's
route cache by a real replica; every other route answers 503 problem+json with Retry-After;
/readyz names the database. Once restored, everything answers normally, with no restart.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from app.backends.base import EndpointSpec, EndpointState
from app.backends.local import LocalBackend
from app.backends.naming import endpoint_name
from app.db import unit_of_work
from app.domain.access import Role
from tests.backends.local.conftest import wait_for
from tests.conftest import REDIS_URL, scratch_database
from tests.factories import PEPPER, make_deployment, make_key, make_project
from tests.test_embedded import _free_port

pytestmark = pytest.mark.slow
REQUEST = {"user": 3, "k": 5}
CUT_S = 8.0  # longer than the key cache's TTL, so keys are served from the stale route too


class CuttableProxy:
    """A TCP proxy on a fixed port; ``cut`` drops every connection and refuses new ones (as a
    stopped server does), ``restore`` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed = [*self._sockets, *([self._listener] if self._listener else [])]
            self._sockets.clear()
            self._listener = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class World:
    deployment_id: uuid.UUID
    editor: str
    unused: str  # a valid editor key that never invoked before the cut
    project_id: uuid.UUID


def _seed(url: str) -> World:
    engine = create_engine(url)
    try:
        with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            editor, unused = make_key(session), make_key(session)
            project = make_project(session, (editor, Role.EDITOR), (unused, Role.EDITOR))
            deployment = make_deployment(session, project, status="in_service", current_instances=1)
            return World(deployment.id, editor.secret, unused.secret, project.id)
    finally:
        engine.dispose()


@dataclass
class Load:
    """Invocations back to back on one keep-alive connection, from a thread."""

    http: httpx.Client
    path: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            answer = self.http.post(self.path, json=REQUEST)
            if answer.status_code == 200 and len(answer.json()["items"]) == 5:
                self.ok += 1
            else:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
            time.sleep(0.01)


@dataclass
class Stack:
    base: str
    proxy: CuttableProxy
    database_url: str


@pytest.fixture
def api(tmp_path: Path, backend: LocalBackend) -> Iterator[Stack]:
    """`stratus api` serving the local backend's work dir, its database behind a proxy."""
    with scratch_database("outage") as url:
        parsed = make_url(url)
        proxy = CuttableProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        proxy.restore()
        through = parsed.set(drivername="postgresql+psycopg", host="127.0.0.1", port=proxy.port)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")} | {
            "STRATUS_ENV": "test",
            "STRATUS_KEY_PEPPER": PEPPER,
            "STRATUS_DATABASE_URL": through.render_as_string(hide_password=False),
            "STRATUS_BROKER_URL": REDIS_URL,
            "STRATUS_DATA_DIR": str(tmp_path / "api-data"),
            "STRATUS_BACKENDS__LOCAL__WORK_DIR": str(backend.work_dir),
            "STRATUS_SERVING__ROUTE_TTL_S": "0.5",  # the cut outlasts every fresh route
            "STRATUS_LOG_LEVEL": "WARNING",
        }
        stratus = str(Path(sys.executable).with_name("stratus"))
        with (tmp_path / "api.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own command line
                [stratus, "api", "--port", str(port)], env=env, stdout=log, stderr=log
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(f"{base}/healthz"), timeout=60)
            yield Stack(base, proxy, url)
        finally:
            process.terminate()
            process.wait(timeout=20)
            proxy.cut()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _deploy(backend: LocalBackend, artifact: Path, deployment_id: uuid.UUID) -> None:
    name = endpoint_name(deployment_id)
    spec = EndpointSpec(
        endpoint_name=name, artifact_uri=artifact.as_uri(), instance_type="local", instance_count=1
    )
    backend.create_endpoint(spec)
    wait_for(
        lambda: backend.describe_endpoints([name])[name].state == EndpointState.IN_SERVICE,
        timeout=60,
    )


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["code"] == "database_unavailable"


def test_invocations_outlive_the_database_and_the_rest_answers_503(
    api: Stack, backend: LocalBackend, recommender_artifact: Path
) -> None:
    world = _seed(api.database_url)
    _deploy(backend, recommender_artifact, world.deployment_id)
    path = f"/v1/deployments/{world.deployment_id}/invocations"
    one = f"/v1/deployments/{world.deployment_id}"
    editor = httpx.Client(base_url=api.base, headers=_bearer(world.editor), timeout=10)
    assert editor.post(path, json=REQUEST).status_code == 200
    assert editor.get(one).status_code == 200
    load = Load(httpx.Client(base_url=api.base, headers=_bearer(world.editor), timeout=10), path)
    loader = threading.Thread(target=load.run, daemon=True)
    loader.start()
    time.sleep(0.5)

    api.proxy.cut()
    cut_at = time.monotonic()
    before = load.ok
    for method, route, body in (
        ("GET", one, None),
        ("GET", "/v1/projects", None),
        ("POST", "/v1/projects", {"name": "made-while-down"}),
        ("PATCH", one, {"desired_instances": 2}),
    ):
        _assert_unavailable(editor.request(method, route, json=body))
    # A key this process has not routed yet cannot be checked: 503, not a guess.
    stranger = httpx.post(f"{api.base}{path}", json=REQUEST, headers=_bearer(world.unused))
    _assert_unavailable(stranger)
    ready = httpx.get(f"{api.base}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["unavailable"] == ["database"]
    assert int(ready.headers["retry-after"]) > 0
    time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
    assert load.ok > before + 20  # served all along, past the key cache's TTL
    assert editor.post(path, json=REQUEST).status_code == 200

    api.proxy.restore()
    wait_for(lambda: editor.get(one).status_code == 200, timeout=30, every=0.2)
    load.stop.set()
    loader.join(timeout=15)
    assert load.failures == []
    # A key first seen now is checked in the database again (after the invocation path's short
    # back-off from its last failed read).
    wait_for(
        lambda: (
            httpx.post(f"{api.base}{path}", json=REQUEST, headers=_bearer(world.unused)).status_code
            == 200
        ),
        timeout=5,
        every=0.2,
    )
    assert httpx.get(f"{api.base}/readyz", timeout=10).status_code == 200
    created = editor.post("/v1/projects", json={"name": "made-after-restore"})
    assert created.status_code == 201, created.text


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
