"""The ``stratus`` command: ``dev`` runs everything on the embedded default; ``db``, ``admin``,
``api``, ``worker`` and ``beat`` are the production building blocks."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, NoReturn

import typer
import uvicorn
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from uvicorn.config import LOG_LEVELS

from app.backends.local.examples import examples_dir
from app.backends.local.sandbox import mode_description as sandbox_mode
from app.db import build_engine, unit_of_work
from app.domain.api_keys.schemas import ApiKeyCreate, ApiKeyCreated
from app.domain.api_keys.service import has_any_admin, issue_key
from app.domain.audit import service as audit
from app.hostpaths import ROOTS_SETTING
from app.migrate import upgrade
from app.settings import DEFAULT_DATA_DIR, InvalidSettings, Settings, get_settings

ASGI_APP = "app.main:app"
CELERY_APP = "workers.celery_app:celery_app"
BEAT_SCHEDULER = "workers.beat:GuardedScheduler"
ADMIN_KEY_FILE = "admin-key"
STOP_TIMEOUT_S = 10.0

cli = typer.Typer(
    name="stratus",
    help="Stratus: a REST control plane to track, train, deploy and right-size models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_cli = typer.Typer(help="Administration.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(admin_cli, name="admin")

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _say(message: str) -> None:
    """Messages for humans go to stderr, so stdout stays parseable."""
    typer.echo(message, err=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    _say(f"stratus: {message}")
    raise typer.Exit(code)


def _load_settings() -> Settings:
    get_settings.cache_clear()
    try:
        return get_settings()
    except InvalidSettings as exc:
        _fail(str(exc), code=2)


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _issue_admin(session: Session, name: str, pepper: str) -> tuple[ApiKeyCreated, str]:
    """A new admin key and its secret."""
    created = issue_key(session, name, True, pepper, None)
    details = {"name": name, "admin": True, "via": "cli"}
    audit.record(session, None, "api_key.create", "api_key", created.id, None, details)
    if created.secret is None:  # only a replayed response lacks it, never a new key
        raise RuntimeError("a new key came without its secret")
    return created, created.secret


def _migrate(url: str, revision: str = "head") -> None:
    try:
        upgrade(url, revision)
    except (SQLAlchemyError, CommandError) as exc:
        _fail(f"migration failed: {exc}")


# --- db / admin ---------------------------------------------------------------------------


@db_cli.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target Alembic revision.")] = "head",
) -> None:
    """Apply database migrations (STRATUS_DATABASE_URL, or the SQLite file in the data dir)."""
    url = _load_settings().effective_database_url
    _say(f"Migrating {_redact(url)} to {revision} ...")
    _migrate(url, revision)
    _say("Database is up to date.")


@admin_cli.command("create-key")
def admin_create_key(
    name: Annotated[str, typer.Option("--name", help="A label for the key, e.g. 'ops-alice'.")],
) -> None:
    """Create an admin API key and print its secret, and nothing else, on stdout."""
    try:
        ApiKeyCreate(name=name, admin=True)
    except ValidationError:
        _fail("--name must be 1-100 letters, digits, spaces or . @ : / - _", code=2)
    settings = _load_settings()
    engine = build_engine(settings.effective_database_url)
    try:
        with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            created, secret = _issue_admin(session, name, settings.key_pepper)
    except SQLAlchemyError as exc:
        _fail(f"could not create the key ({type(exc).__name__}); has `stratus db upgrade` run?")
    finally:
        engine.dispose()
    _say(f"Created admin key '{name}' (id {created.id}). The secret is shown only this once.")
    typer.echo(secret)


# --- production conveniences --------------------------------------------------------------


@cli.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.")] = 1,
) -> None:
    """Serve the HTTP API (uvicorn app.main:app)."""
    settings = _load_settings()
    # uvicorn's own loggers (its access log: a line per request) follow STRATUS_LOG_LEVEL too.
    level = settings.log_level.lower()
    uvicorn.run(
        ASGI_APP,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level=level if level in LOG_LEVELS else "info",
    )


def _exec_celery(args: list[str]) -> NoReturn:
    # exec, so the Celery process receives signals directly (PID 1 in a container).
    argv = [sys.executable, "-m", "celery", "-A", CELERY_APP, *args]
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell


@cli.command(context_settings=PASSTHROUGH)
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker; extra options go to `celery worker`."""
    _load_settings()
    _exec_celery(["worker", *ctx.args])


@cli.command(context_settings=PASSTHROUGH)
def beat(ctx: typer.Context) -> None:
    """Run the Celery beat scheduler (one active at a time); extra options go to `celery beat`."""
    _load_settings()
    _exec_celery(["beat", "--scheduler", BEAT_SCHEDULER, *ctx.args])


# --- dev: everything in one command -------------------------------------------------------


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` with mode 0600; no moment exists where others can read it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def bootstrap_admin(settings: Settings, key_file: Path) -> str | None:
    """On first start (no active admin key), create one and store it in ``key_file``."""
    engine = build_engine(settings.effective_database_url)
    try:
        with unit_of_work(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            if has_any_admin(session):
                return None
            secret = _issue_admin(session, "admin", settings.key_pepper)[1]
            # Written before the commit: if the file cannot be written, no key exists either.
            write_secret_file(key_file, secret)
        return secret
    finally:
        engine.dispose()


class _Stop(BaseException):
    """SIGTERM, turned into an exception so the ``finally`` that stops the children runs."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: on Linux, ask for SIGTERM when `stratus dev`
    # dies, even by SIGKILL, so no worker outlives it.
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _become_subreaper() -> None:
    # Training supervisors and replica controllers detach from the worker that starts them;
    # as a subreaper, `stratus dev` adopts them when they end, so they are reaped, not zombies.
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(36, 1)  # 36 = PR_SET_CHILD_SUBREAPER


def _reap_adopted(managed: set[int]) -> None:
    """Reap exited processes this one adopted (never the worker or beat, which Popen owns)."""
    me = str(os.getpid())
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat_file.parent.name)
        if fields[0] == "Z" and fields[1] == me and pid not in managed:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


@dataclass
class _Child:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    reported: bool = False


@dataclass
class DevChildren:
    """The worker and beat of ``stratus dev``: started, watched, and stopped without orphans."""

    children: list[_Child]
    env: dict[str, str]
    stopping: threading.Event = field(default_factory=threading.Event)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> None:
        for child in self.children:
            child.log.parent.mkdir(parents=True, exist_ok=True)
            log = child.log.open("ab")
            self._logs.append(log)
            # A session of its own: the terminal's Ctrl-C reaches only us, and we stop the
            # children in order; their whole process group can be killed if they hang.
            child.proc = subprocess.Popen(
                child.args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # safe: called before any thread starts
            )
        threading.Thread(target=self._watch, name="stratus-dev-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            _reap_adopted({c.proc.pid for c in self.children if c.proc is not None})
            for child in self.children:
                code = child.proc.poll() if child.proc else None
                if code is not None and not child.reported and not self.stopping.is_set():
                    child.reported = True
                    _say(
                        f"stratus dev: the {child.name} exited unexpectedly (code {code}); "
                        f"see {child.log}. Restart `stratus dev` to bring it back."
                    )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Terminate every child, wait up to ``timeout``, then kill what is left."""
        self.stopping.set()
        running = [c.proc for c in self.children if c.proc is not None]
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # Anything the child left behind in its process group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for log in self._logs:
            log.close()


def celery_children(logs: Path, log_level: str = "INFO") -> list[_Child]:
    """The worker (threads pool, so it also runs where fork is unwelcome) and beat commands."""
    base = [sys.executable, "-m", "celery", "-A", CELERY_APP]
    worker_args = [*base, "worker", "--pool=threads", "--concurrency=2", f"--loglevel={log_level}"]
    beat_args = [*base, "beat", "--scheduler", BEAT_SCHEDULER, f"--loglevel={log_level}"]
    return [
        _Child("worker", worker_args, logs / "worker.log"),
        _Child("beat", beat_args, logs / "beat.log"),
    ]


class _DevServer(uvicorn.Server):
    """uvicorn, announcing the URLs once the socket really listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port} ({exc.strerror}); try --port", code=2)


def default_host_roots() -> None:
    """Unless the admin chose host roots, `stratus dev` allows the directory it started in
    (and the shipped examples, so `stratus demo` works from anywhere)."""
    if os.environ.get(ROOTS_SETTING):
        return
    cwd = Path.cwd().resolve()
    roots = [cwd]
    examples = examples_dir()
    if examples is not None and not examples.resolve().is_relative_to(cwd):
        roots.append(examples.resolve())
    os.environ[ROOTS_SETTING] = json.dumps([str(r) for r in roots])


def _banner(
    url: str, key_file: Path, secret: str | None, logs: Path, roots: list[Path]
) -> Callable[[], None]:
    def show() -> None:
        lines = [
            "",
            f"Stratus is running at {url}",
            f"API docs:  {url}/docs",
            f"Console:   {url}/ui/",
        ]
        shown = ", ".join(str(r) for r in roots) or "none"
        lines.append(f"Host roots: {shown} (runs may name host paths only under these; set by")
        lines.append(f"            {ROOTS_SETTING})")
        if secret:
            lines += [
                f"Admin key: {secret}",
                f"           (shown once; also saved to {key_file}, mode 0600)",
            ]
        else:
            lines.append(f"Admin key: in {key_file}")
        lines += [f"Worker and beat logs: {logs}", "Press Ctrl-C to stop.", ""]
        typer.echo("\n".join(lines))

    return show


@cli.command()
def dev(
    port: Annotated[int, typer.Option(help="TCP port for the API.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    data_dir: Annotated[
        Path, typer.Option(help="Where the database, broker, admin key and logs live.")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Run the API, a worker and beat on the embedded default: no Postgres or Redis needed."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["STRATUS_DATA_DIR"] = str(data_dir)
    default_host_roots()
    # Webhook receivers under development usually listen on this machine.
    os.environ.setdefault("STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
    # One metrics directory shared by the API and the worker processes it starts.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = data_dir / "prometheus"  # emptied: counters start again with the server
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    settings = _load_settings()
    roots = settings.backends.local.host_roots
    _check_port(host, port)

    _say(f"Database: {_redact(settings.effective_database_url)}")
    _say(f"Sandbox: {sandbox_mode(settings)}")
    _migrate(settings.effective_database_url)
    key_file = data_dir / ADMIN_KEY_FILE
    secret = bootstrap_admin(settings, key_file)
    if secret is None and not key_file.exists():
        _say(
            f"An admin key exists but {key_file} is missing; `stratus admin create-key` makes one."
        )

    logs = data_dir / "logs"
    children = DevChildren(celery_children(logs, settings.log_level), env=dict(os.environ))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    level = settings.log_level.lower()
    config = uvicorn.Config(
        ASGI_APP, host=host, port=port, log_level=level if level in LOG_LEVELS else "info"
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _become_subreaper()
    try:
        children.start()
        _DevServer(config, _banner(url, key_file, secret, logs, roots)).run()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _say("Stopping the worker and beat ...")
        children.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _say("Stopped.")


@cli.command()
def demo(
    url: Annotated[str, typer.Option(help="A running Stratus.")] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(
            help="API key (default: $STRATUS_API_KEY, else DATA_DIR/admin-key).",
            envvar="STRATUS_API_KEY",
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Where `stratus dev` keeps its admin key.")
    ] = DEFAULT_DATA_DIR,
    requests: Annotated[int, typer.Option(min=1, help="Requests to send to the model.")] = 300,
    keep: Annotated[
        bool, typer.Option(help="Keep the demo's project, run and deployment afterwards.")
    ] = False,
) -> None:
    """Train, register, deploy, invoke and measure the shipped recommender, end to end."""
    from app.demo import run_demo

    if key is None:
        key_file = data_dir.expanduser() / ADMIN_KEY_FILE
        if not key_file.is_file():
            _fail(f"no --key given and no {key_file}; start `stratus dev` or pass --key", 2)
        key = key_file.read_text().strip()
    raise typer.Exit(run_demo(url, key, requests=requests, keep=keep))


# The client's commands (login, projects, runs, models, deploy ...) live with the client,
# installed as the package `stratus` (its source is app/client).
importlib.import_module("stratus.cli").register(cli)


def main() -> None:
    """Console-script entry point (``stratus``)."""
    cli()


if __name__ == "__main__":
    main()
