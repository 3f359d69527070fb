"""metric series index: (subject_id, name, timestamp, id) include (value)

Time-bounded reads (optimizer windows, series over a range, history pages) become index ranges
of the points they return, instead of scans of a subject's whole history.

On PostgreSQL the new index is built CONCURRENTLY, outside the migration's transaction, before
the old one is dropped, so ingest and reads keep running while a large table is indexed. A
failed concurrent build leaves an INVALID index behind; rerunning the upgrade replaces it.

Revision ID: 3b9e4f1c7d20
Revises: 7c66531f45a6
Create Date: 2026-11-26 21:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3b9e4f1c7d20"
down_revision: str | None = "7c66531f45a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap(old: str, new: str, columns: list[str], include: list[str]) -> None:
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(old, table_name="metric_points")
        op.create_index(new, "metric_points", columns, unique=False)
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {new}")  # a failed earlier build
        op.create_index(
            new,
            "metric_points",
            columns,
            unique=False,
            postgresql_include=include,
            postgresql_concurrently=True,
        )
        op.drop_index(old, table_name="metric_points", postgresql_concurrently=True)


def upgrade() -> None:
    _swap(
        "ix_metric_points_subject",
        "ix_metric_points_series",
        ["subject_id", "name", "timestamp", "id"],
        ["value"],
    )


def downgrade() -> None:
    _swap(
        "ix_metric_points_series",
        "ix_metric_points_subject",
        ["subject_id", "name", "id"],
        ["timestamp", "value"],
    )
