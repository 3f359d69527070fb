"""A webhook receiver on the loopback, as an integrator would write one: it verifies the
signature and processes each ``webhook-id`` once; its answers are scripted per request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.domain.webhooks.signing import verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``script`` answers requests in turn: a status code, ``("sleep", s)`` to stall past the
    sender's timeout, ``("hang", event)`` to block until ``event`` is set, or
    ``(status, headers)``; past its end every request gets 200."""

    secret: str = ""
    script: list[Any] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)  # webhook-ids handled, once each
    bad_signatures: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            self.received.append(Received(headers, body))
            step = self.script.pop(0) if self.script else 200
        if isinstance(step, tuple) and step[0] == "sleep":
            time.sleep(step[1])
            step = 200
        if isinstance(step, tuple) and step[0] == "hang":
            step[1].wait(30)
            step = 200
        status, extra = (step, {}) if isinstance(step, int) else step
        if 200 <= status < 300:
            self._process(headers, body)
        try:
            handler.send_response(status)
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.send_header("content-length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the sender is gone

    def _process(self, headers: dict[str, str], body: bytes) -> None:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        if not verify(self.secret, msg_id, timestamp, body, headers["webhook-signature"]):
            self.bad_signatures += 1
            return
        with self.lock:
            if msg_id not in self.processed:
                self.processed.append(msg_id)


@contextmanager
def receiver(**fields: Any) -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 until the block ends."""
    state = Receiver(**fields)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            state.answer(self)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
