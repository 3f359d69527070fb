"""One model replica: ``python -m app.backends.local.serving MODEL_DIR FD``.

It serves SageMaker's container contract, ``GET /ping`` and ``POST /invocations``, on the
listening socket ``FD`` its controller bound for it (so the controller knows the port before
the replica starts, and nothing else can take it). ``/ping`` answers 503 until ``model_fn``
has loaded the model. On SIGTERM it drains: it keeps serving a moment for requests already
routed to it, stops accepting, finishes what is in flight, and exits.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from app.backends.local.handler import JSON, InferenceError, InferenceHandler, status_of

LINGER_S = 0.5  # time for callers that read the registry just before the drain to arrive
RETRY_HEADER = "X-Stratus-Retry"  # "this replica cannot take it; try another one"
IDLE_S = 2.0  # a kept-alive connection with no request for this long is closed


class ReplicaServer(ThreadingHTTPServer):
    """An HTTP server on an inherited socket that waits for in-flight requests when closed."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], ReplicaRequest, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.inference: InferenceHandler | None = None
        self.draining = False
        # One request at a time per replica, like one model-server worker per instance: user
        # code need not be thread-safe, and load shows up as queueing the optimizer can see.
        self.model_lock = threading.Lock()
        self._logged = 0.0

    def log_failure(self) -> None:
        """Log the current exception's traceback, at most once a second."""
        # A model failing every request must not fill the disk with identical tracebacks.
        if time.monotonic() - self._logged >= 1.0:
            self._logged = time.monotonic()
            traceback.print_exc(file=sys.stderr)


class ReplicaRequest(BaseHTTPRequestHandler):
    """``/ping`` and ``/invocations``."""

    server: ReplicaServer
    # Keep-alive, so a router's pooled connection serves request after request. An idle
    # connection is closed after ``timeout`` seconds (a router drops its own sooner), and a
    # draining replica closes each connection after its answer, so draining strands none.
    protocol_version = "HTTP/1.1"
    timeout = IDLE_S
    disable_nagle_algorithm = True  # headers and body go out at once, not a delayed ACK apart

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """Health: 200 once the model is loaded, 503 before and while draining."""
        if self.path.split("?")[0] != "/ping":
            self._reply(404, b'{"error": "not found"}', JSON)
        elif self.server.inference is None or self.server.draining:
            self._reply(503, b"", JSON, retry=True)
        else:
            self._reply(200, b"", JSON)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """One inference request through the model's hooks."""
        if self.path.split("?")[0] != "/invocations":
            self._reply(404, b'{"error": "not found"}', JSON)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply(411, b'{"error": "Content-Length required"}', JSON)
            return
        body = self.rfile.read(int(length))
        inference = self.server.inference
        if inference is None:
            self._reply(503, b'{"error": "the model is loading"}', JSON, retry=True)
            return
        content_type = self.headers.get("Content-Type") or JSON
        accept = self.headers.get("Accept") or JSON
        try:
            with self.server.model_lock:
                answer, media = inference.handle(body, content_type, accept)
        except InferenceError as exc:
            self._reply(exc.status, _error(str(exc)), JSON)
        except Exception as exc:
            self.server.log_failure()
            message = _error(f"{type(exc).__name__}: {exc}")
            self._reply(status_of(exc, default=500), message, JSON)
        else:
            self._reply(200, answer, media)

    def _reply(self, status: int, body: bytes, media: str, *, retry: bool = False) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [
            f"HTTP/1.1 {status} {phrase}",
            f"Content-Type: {media}",
            f"Content-Length: {len(body)}",
        ]
        if retry:
            head.append(f"{RETRY_HEADER}: 1")
        if self.server.draining:
            head.append("Connection: close")
            self.close_connection = True
        # One write for the head and the body: one segment for the caller to wait for.
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        """Requests are measured by the router; one log line each would only fill the disk."""


def _error(message: str) -> bytes:
    return json.dumps({"error": message[:2000]}).encode()


def drain(server: ReplicaServer, loop: threading.Thread) -> None:
    """Serve what was routed here, stop accepting, finish what is in flight."""
    server.draining = True
    time.sleep(LINGER_S)
    server.shutdown()
    loop.join()
    server.timeout = 0
    # Connections already queued in the backlog were sent here before the drain: serve them.
    while select.select([server.socket], [], [], 0)[0]:
        server.handle_request()
    server.server_close()  # joins the request threads still running


def main(argv: list[str]) -> int:
    """Load the model in ``argv[0]`` and serve it on the socket ``argv[1]`` until SIGTERM."""
    model_dir, fd = Path(argv[0]), int(argv[1])
    server = ReplicaServer(socket.socket(fileno=fd))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    loop.start()
    try:
        inference = InferenceHandler(model_dir)
        inference.load()
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        server.shutdown()
        server.server_close()
        return 3
    server.inference = inference
    sys.stderr.write(f"model loaded from {model_dir}; serving\n")
    while not stop.wait(0.5):
        pass
    drain(server, loop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
