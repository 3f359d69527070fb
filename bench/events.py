"""What the event log costs a state change: run transitions per second through
``runs.service.transition`` (guarded UPDATE + event + webhook fan-out) against the bare guarded
UPDATE it wraps (the baseline, in the same process on the same database), with no webhook and
with five webhooks subscribed.

One command: ``.venv/bin/python bench/events.py``. It creates a scratch PostgreSQL database,
migrates it, runs each variant on fresh runs, one transaction per transition, and drops the
database. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from support import PG, ROOT, scratch_database  # noqa: I001 - bench/ is on sys.path

sys.path.insert(0, str(ROOT))  # this checkout's app, whatever is installed

from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from app.clock import utcnow  # noqa: E402
from app.db import build_engine, unit_of_work  # noqa: E402
from app.domain.projects.models import Project  # noqa: E402
from app.domain.runs import repository as runs_repo  # noqa: E402
from app.domain.runs import service as runs  # noqa: E402
from app.domain.runs.models import TrainingRun  # noqa: E402
from app.domain.runs.states import RunStatus  # noqa: E402
from app.domain.webhooks.models import Webhook  # noqa: E402
from app.migrate import upgrade  # noqa: E402

S = RunStatus
ROUNDS = 5


def _project(factory: sessionmaker[Session], name: str, webhooks: int) -> Project:
    with unit_of_work(factory) as session:
        project = Project(name=name, description="", default_backend="local")
        session.add(project)
        session.flush()
        for i in range(webhooks):
            session.add(
                Webhook(
                    project_id=project.id,
                    url=f"https://hooks.example.com/{i}",
                    events=["run.*"],
                    status="active",
                    secret_salt=f"{i:032d}",
                )
            )
        return project


def _runs(factory: sessionmaker[Session], project: Project, count: int) -> list[TrainingRun]:
    with unit_of_work(factory) as session:
        rows = [
            TrainingRun(
                project_id=project.id,
                name=f"r{i}",
                backend="local",
                spec={"entrypoint": "train.py", "instance_type": "local"},
                status=S.PENDING,
                final_metrics={},
            )
            for i in range(count)
        ]
        session.add_all(rows)
        return rows


def _seconds(
    factory: sessionmaker[Session], rows: list[TrainingRun], move: Callable[..., bool]
) -> float:
    started = time.perf_counter()
    for row in rows:
        with unit_of_work(factory) as session:
            assert move(session, row.id)
    return time.perf_counter() - started


def _bare(session: Session, run_id: object) -> bool:
    values = {"status": S.STOPPED, "updated_at": utcnow(), "ended_at": utcnow()}
    return runs_repo.guarded_update(session, run_id, S.PENDING, values)  # type: ignore[arg-type]


def _evented(session: Session, run_id: object) -> bool:
    return runs.transition(session, run_id, S.PENDING, S.STOPPED)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="transitions per variant")
    count = parser.parse_args().runs
    variants = (
        ("bare_update", _bare, 0),
        ("with_event", _evented, 0),
        ("with_event_5_webhooks", _evented, 5),
    )
    spent = dict.fromkeys((label for label, _, _ in variants), 0.0)
    with scratch_database("stratus_bench_events") as name:
        url = f"{PG.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
        upgrade(url)
        engine = build_engine(url)
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        projects = {
            label: _project(factory, f"bench-{label.replace('_', '-')}", hooks)
            for label, _, hooks in variants
        }
        # Rounds alternate the variants, so a busy moment of the host weighs on all alike.
        for _ in range(ROUNDS):
            for label, move, _ in variants:
                rows = _runs(factory, projects[label], count // ROUNDS)
                spent[label] += _seconds(factory, rows, move)
        engine.dispose()
    rates = {label: (count // ROUNDS) * ROUNDS / seconds for label, seconds in spent.items()}
    base = rates["bare_update"]
    print(f"{'variant':<24}{'transitions/s':>15}{'vs bare':>10}")
    for label, rate in rates.items():
        print(f"{label:<24}{rate:>15.0f}{rate / base:>10.2f}")
    result = {
        "transitions": count,
        **{f"{k}_per_s": round(v, 1) for k, v in rates.items()},
        "with_event_ratio": round(rates["with_event"] / base, 3),
        "with_event_5_webhooks_ratio": round(rates["with_event_5_webhooks"] / base, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
