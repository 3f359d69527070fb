"""Metric queries as the table grows to 100 M points: do they stay fast?

One command from a fresh clone: ``.venv/bin/python bench/metrics_scale.py`` (``--points`` to
choose the final size; the default, 100 M, needs about 20 GB of disk and 15–30 minutes here).
It creates a scratch database on the local PostgreSQL, migrates it, and fills ``metric_points``
in time order the way production does (every subject writing at once, ids rising with time):
20,000 ordinary subjects with 10 metric names each, plus one hot deployment that gets 1 % of
all points. At each checkpoint (1 M, 10 M, then the final size) it runs ``VACUUM ANALYZE`` (what
autovacuum does for an insert-only table) and times the queries the API runs, through the
application's own query functions:

- history: the first page (100 points) of one name of a subject, and a page after a cursor;
- series: one name of a subject over its whole range in 100 buckets (min/max/mean/last);
- latest: the newest point of every name of a subject;
- window: count, mean and p95 per name over the last hour (what the optimizer reads);
- hot series: the same series over the hot deployment's busiest name;
- purge: one retention delete of 500 of a project's points older than the oldest tenth of
  the data, rolled back.

Each query runs for 30 random subjects; the table gives median and p95 milliseconds and the
plan's access path. The ratio of a query's median at the final size to its median at 1 M is
the figure that says whether it "stays fast" (≈ 1 means it does not grow with the table).
The database is dropped at the end. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from support import PG, ROOT, scratch_database  # noqa: I001 - bench/ is on sys.path

sys.path.insert(0, str(ROOT))  # this checkout's app, whatever is installed

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

SUBJECTS = 20_000
NAMES = 10
PROJECTS = 100
HOT_SHARE = 101  # every 101st point goes to the hot deployment (coprime with SUBJECTS)
CHUNK = 2_000_000
SAMPLES = 30
PURGE_BATCH = 500  # rows per retention delete; every project has this many past the cutoff
POINT_SPACING = timedelta(milliseconds=20)
START = datetime(2026, 1, 1, tzinfo=UTC)

# Row g of the load: the hot deployment gets every HOT_SHARE-th row, the others cycle through
# the ordinary subjects; names cycle within a subject; time and id both rise with g.
LOAD_SQL = """
INSERT INTO metric_points (project_id, subject_type, subject_id, name, step, timestamp, value)
SELECT
    CASE WHEN g %% {hot} = 0 THEN %(hot_project)s::uuid
         ELSE (%(projects)s::uuid[])[g %% {subjects} %% {projects} + 1] END,
    CASE WHEN g %% {hot} = 0 THEN 'deployment' ELSE 'run' END,
    CASE WHEN g %% {hot} = 0 THEN %(hot)s::uuid
         ELSE (%(subjects)s::uuid[])[g %% {subjects} + 1] END,
    'metric_' || CASE WHEN g %% {hot} = 0 THEN (g / {hot}) %% {names}
                      ELSE (g / {subjects}) %% {names} END,
    g,
    %(start)s::timestamptz + g * %(spacing)s::interval,
    random()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g
"""


def checkpoints(final: int) -> list[int]:
    marks = [m for m in (1_000_000, 10_000_000) if m < final]
    return [*marks, final]


class World:
    def __init__(self) -> None:
        rng = random.Random(7)  # noqa: S311 - reproducible data, not secrets
        self.projects = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(PROJECTS)]
        self.subjects = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(SUBJECTS)]
        self.hot_project = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.hot = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.loaded = 0

    def load(self, dsn: str, upto: int) -> float:
        """Append rows [loaded, upto) in chunks; returns rows per second."""
        sql = LOAD_SQL.format(hot=HOT_SHARE, subjects=SUBJECTS, projects=PROJECTS, names=NAMES)
        began = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for lo in range(self.loaded, upto, CHUNK):
                hi = min(lo + CHUNK, upto)
                conn.execute(
                    sql,
                    {
                        "hot_project": self.hot_project,
                        "projects": self.projects,
                        "hot": self.hot,
                        "subjects": self.subjects,
                        "start": START,
                        "spacing": POINT_SPACING,
                        "lo": lo,
                        "hi": hi,
                    },
                )
                print(f"  loaded {hi:,} points", file=sys.stderr, flush=True)
        rows = upto - self.loaded
        self.loaded = upto
        return rows / (time.perf_counter() - began)

    def end(self) -> datetime:
        return START + POINT_SPACING * self.loaded


def timed(fn: Callable[[], Any], samples: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``fn`` over ``samples`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000.0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def scan_nodes(session: Session, statements: list[tuple[str, Any]]) -> str:
    """The scan nodes of the plans of the statements a query ran, e.g. 'Index Only Scan'."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node["Node Type"]
        if "Scan" in kind and kind not in found:
            found.append(kind)
        for child in node.get("Plans", []):
            walk(child)

    connection = session.connection()
    for statement, parameters in statements:
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        walk(plan.scalar_one()[0]["Plan"])
    return ", ".join(found)


@contextmanager
def capture(session: Session) -> Iterator[list[tuple[str, Any]]]:
    """The statements (with parameters) the session runs inside the block."""
    statements: list[tuple[str, Any]] = []
    engine = session.get_bind()

    def grab(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if not statement.lstrip().upper().startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def measure(factory: sessionmaker[Session], world: World) -> dict[str, dict[str, Any]]:
    """Every query's median/p95 ms and access path at the current size."""
    from app.domain.metrics import aggregates, repository
    from app.domain.optimizer import repository as optimizer_repository
    from app.domain.pagination import PageRequest

    rng = random.Random(11)  # noqa: S311
    end = world.end()
    out: dict[str, dict[str, Any]] = {}
    with factory() as session:

        def subject() -> uuid.UUID:
            return rng.choice(world.subjects)

        def history_first() -> None:
            rows, _ = repository.history(
                session, "run", subject(), PageRequest(limit=100), name="metric_3"
            )
            assert rows

        def history_after() -> None:
            s = subject()
            _, cursor = repository.history(session, "run", s, PageRequest(limit=100), "metric_3")
            if cursor is not None:
                repository.history(session, "run", s, PageRequest(cursor, 100), "metric_3")

        def series_of(s: uuid.UUID, name: str) -> None:
            first, last = aggregates.time_range(session, s, [name])
            assert first is not None
            assert last is not None
            width = max((last - first) / 100, timedelta(microseconds=1))
            assert aggregates.series(session, s, name, first, width, 100, None, None)

        def latest() -> None:
            assert len(aggregates.latest(session, subject())) == NAMES

        names = [f"metric_{i}" for i in range(NAMES)]

        def window() -> None:
            aggregates.window_aggregates(session, subject(), names, end - timedelta(hours=1), end)

        def hot_window() -> None:
            aggregates.window_aggregates(session, world.hot, names, end - timedelta(hours=1), end)

        def hot_optimizer_window() -> None:
            since = end - timedelta(hours=3)
            assert optimizer_repository.window_points(session, world.hot, names, since, end)

        def hot_history_all_names() -> None:
            rows, _ = repository.history(session, "deployment", world.hot, PageRequest(limit=100))
            assert rows

        # Retention cuts off the oldest tenth of the data, as a 30-day policy would a year.
        cutoff = START + (end - START) / 10

        def purge() -> None:
            project = rng.choice(world.projects)
            assert repository.purge_points(session, project, cutoff, PURGE_BATCH) == PURGE_BATCH
            session.rollback()

        cases: list[tuple[str, Callable[[], None]]] = [
            ("history", history_first),
            ("history_after_cursor", history_after),
            ("series", lambda: series_of(subject(), "metric_3")),
            ("latest", latest),
            ("window", window),
            ("hot_series", lambda: series_of(world.hot, "metric_3")),
            ("hot_window", hot_window),
            ("hot_optimizer_window", hot_optimizer_window),
            ("hot_history_all_names", hot_history_all_names),
            ("purge", purge),
        ]
        for name, fn in cases:
            median, p95 = timed(fn, 5 if name.startswith("hot_") else SAMPLES)
            with capture(session) as statements:
                fn()
            out[name] = {
                "median_ms": median,
                "p95_ms": p95,
                "path": scan_nodes(session, statements),
            }
            session.rollback()
    return out


def sizes(dsn: str) -> dict[str, float]:
    """The heap's and each index's size in MiB."""
    with psycopg.connect(dsn) as conn:
        heap = conn.execute("SELECT pg_table_size('metric_points')").fetchone()
        indexes = conn.execute(
            "SELECT indexname, pg_relation_size(indexname::regclass) FROM pg_indexes "
            "WHERE tablename = 'metric_points' ORDER BY indexname"
        ).fetchall()
    assert heap is not None
    mib = 1024.0**2
    return {"heap": heap[0] / mib} | {name: size / mib for name, size in indexes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000_000, help="final table size")
    args = parser.parse_args()

    from sqlalchemy import create_engine

    from app.migrate import upgrade

    world = World()
    results: dict[int, dict[str, dict[str, Any]]] = {}
    load_rates: dict[int, float] = {}
    size_at: dict[int, dict[str, float]] = {}
    with scratch_database("stratus_scale") as db:
        dsn = f"{PG}/{db}"
        url = dsn.replace("postgresql://", "postgresql+psycopg://")
        upgrade(url)
        engine = create_engine(url)
        factory = sessionmaker(bind=engine)
        try:
            for mark in checkpoints(args.points):
                load_rates[mark] = world.load(dsn, mark)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE metric_points")
                size_at[mark] = sizes(dsn)
                results[mark] = measure(factory, world)
                print(f"  measured at {mark:,} points", file=sys.stderr, flush=True)
        finally:
            engine.dispose()
    report(results, load_rates, size_at)


def report(
    results: dict[int, dict[str, dict[str, Any]]],
    load_rates: dict[int, float],
    size_at: dict[int, dict[str, float]],
) -> None:
    marks = sorted(results)
    first, last = marks[0], marks[-1]
    print(
        f"metric_points: {SUBJECTS:,} subjects x {NAMES} names + one hot deployment "
        f"(1 % of points); {SAMPLES} random subjects per query"
    )
    header = f"{'query':<22}" + "".join(f"{f'{m / 1e6:g} M: med / p95 ms':>26}" for m in marks)
    header += f"{'growth':>9}  access path"
    print(header)
    print("-" * len(header))
    growth: dict[str, float] = {}
    for name in results[last]:
        cells = "".join(
            f"{results[m][name]['median_ms']:>15.2f} / {results[m][name]['p95_ms']:>7.2f} "
            for m in marks
        )
        ratio = results[last][name]["median_ms"] / results[first][name]["median_ms"]
        growth[name] = ratio
        print(f"{name:<22}{cells}{ratio:>8.2f}x  {results[last][name]['path']}")
    for m in marks:
        parts = ", ".join(f"{name} {mib:,.1f}" for name, mib in size_at[m].items())
        print(f"at {m / 1e6:g} M: load {load_rates[m]:,.0f} points/s; MiB: {parts}")
    out: dict[str, Any] = {"points": last}
    for name, row in results[last].items():
        out[f"{name}_ms"] = round(row["median_ms"], 3)
    out["growth_vs_1m"] = {k: round(v, 2) for k, v in growth.items()}
    out["load_points_per_s"] = round(load_rates[last])
    out["heap_gib"] = round(size_at[last]["heap"] / 1024.0, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
