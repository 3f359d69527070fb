"""What every fake cloud shares: a threaded loopback HTTP server, a clock tests can move,
scheduled state changes, bearer-token checks, throttling and fault hooks, call counting.

A fake's handlers take a ``Request`` and return a ``Reply``; state lives in the fake under
one lock. Time is ``time.monotonic()`` plus whatever ``advance()`` added, so tests move jobs
along without sleeping, and benches let them move in real time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-access-token"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw or b"{}")


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON, or bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[..., Reply]


class FakeCloud:
    """Routes, clock, schedule and hooks; subclasses add routes and error bodies."""

    name = "fake"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self.calls: Counter[str] = Counter()  # API calls by route name (token calls apart)
        self.token_exchanges = 0
        self.offset = 0.0
        self._schedule: list[tuple[float, Callable[[], None]]] = []
        self._throttle = 0
        self.retry_after = "0.01"
        self.throttled = 0
        self._drop: set[str] = set()  # route names whose next answer is lost after the work
        self.hold: threading.Event | None = None  # set: creates wait for it after the work
        self.held = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # ---- time and schedule
    def now(self) -> float:
        return time.monotonic() + self.offset

    def later(self, delay: float, change: Callable[[], None]) -> None:
        """Run ``change`` once the fake's clock passes now + ``delay``."""
        with self.lock:
            self._schedule.append((self.now() + delay, change))

    def tick(self) -> None:
        with self.lock:
            due = [c for c in self._schedule if c[0] <= self.now()]
            self._schedule = [c for c in self._schedule if c[0] > self.now()]
            for _, change in sorted(due, key=lambda c: c[0]):
                change()

    def advance(self, seconds: float) -> None:
        """Move the clock on (and apply what became due)."""
        with self.lock:
            self.offset += seconds
        self.tick()

    # ---- hooks
    def throttle(self, requests: int, retry_after: str = "0.01") -> None:
        """The next ``requests`` API calls answer 429 with Retry-After."""
        with self.lock:
            self._throttle, self.retry_after = requests, retry_after

    def drop_next(self, route: str) -> None:
        """Do the next ``route`` call, then close the connection without answering."""
        with self.lock:
            self._drop.add(route)

    # ---- what every fake offers tests (the cloud's truth, not the backend's view)
    def finish(self, job_name: str, ok: bool = True) -> None:
        """End the job of that name (succeeded, or failed)."""
        raise NotImplementedError

    def count_named(self, job_name: str) -> int:
        """How many jobs were created under that Stratus name."""
        raise NotImplementedError

    def replicas(self, endpoint_name: str) -> int:
        """Instances serving the endpoint."""
        raise NotImplementedError

    def running_names(self) -> list[str]:
        """Stratus names of the jobs running now."""
        raise NotImplementedError

    def touch(self, job_name: str) -> None:
        """Change the job without changing its state (its update time, a sub-phase)."""
        raise NotImplementedError

    # ---- serving
    def route(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + "$"), name, handler))

    def error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error": {"code": code, "message": message}})

    def token_reply(self, request: Request) -> Reply | None:
        """The answer of the cloud's token endpoint, or None when ``request`` is not for it."""
        return None

    def dispatch(self, request: Request) -> tuple[Reply | None, str]:
        token = self.token_reply(request)
        if token is not None:
            with self.lock:
                self.token_exchanges += 1
            return token, ""
        for method, pattern, name, handler in self.routes:
            match = pattern.match(request.path)
            if method == request.method and match:
                return self._answer(request, name, handler, match.groupdict()), name
        return self.error(404, "NOT_FOUND", f"no route for {request.method} {request.path}"), ""

    def _answer(self, request: Request, name: str, handler: Handler, args: dict[str, str]) -> Reply:
        if not name.startswith("model.") and request.headers.get("authorization") != (
            f"Bearer {TOKEN}"
        ):
            return self.error(401, "UNAUTHENTICATED", "missing or invalid bearer token")
        with self.lock:
            self.calls[name] += 1
            if self._throttle > 0 and not name.startswith("model."):
                self._throttle -= 1
                self.throttled += 1
                reply = self.error(429, "TOO_MANY_REQUESTS", "rate limit exceeded, slow down")
                reply.headers["Retry-After"] = self.retry_after
                return reply
        self.tick()
        with self.lock:
            return handler(request, **args)

    def routes_named(self) -> set[str]:
        return {name for _, _, name, _ in self.routes}

    def take_drop(self, name: str) -> bool:
        with self.lock:
            if name in self._drop:
                self._drop.discard(name)
                return True
            return False

    def start(self) -> str:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every answer waits for a delayed ACK

            def log_message(self, *_: Any) -> None:
                pass

            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                reply, name = fake.dispatch(request)
                if name and fake.take_drop(name):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if name and name.endswith(".create") and fake.hold is not None:
                    fake.held.set()
                    fake.hold.wait(30)
                assert reply is not None
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if isinstance(reply.body, bytes):
                    data = reply.body
                elif reply.body is None:
                    data = b""
                else:
                    data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def model_answer(request: Request) -> Reply:
    """The served model: ``{"status": N}`` makes it answer N (as a model's own error would);
    anything else is echoed back with 200."""
    try:
        asked = json.loads(request.raw or b"{}")
    except ValueError:
        asked = None
    if isinstance(asked, dict) and isinstance(asked.get("status"), int):
        status = asked["status"]
        return Reply(status, f"model says {status}".encode(), content_type="text/plain")
    return Reply(200, {"echo": request.raw.decode(errors="replace")})


def iso(moment: float) -> str:
    """A fake-clock moment as an RFC 3339 UTC time (wall time, shifted like the clock)."""
    wall = time.time() + (moment - time.monotonic())
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"
