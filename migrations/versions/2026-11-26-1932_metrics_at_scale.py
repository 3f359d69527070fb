"""metrics at scale

Revision ID: 59fb02d97685
Revises: a42a19c856ac
Create Date: 2026-11-26 19:32:21.532764
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "59fb02d97685"
down_revision: str | None = "a42a19c856ac"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_batches",
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "batch_id", name=op.f("pk_metric_batches")),
    )
    op.create_index("ix_metric_batches_created_at", "metric_batches", ["created_at"], unique=False)
    op.create_table(
        "metric_retention",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_metric_retention_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_metric_retention")),
    )
    # Series, windows and latest values read timestamp and value from the index itself
    # (PostgreSQL INCLUDE; SQLite ignores it and keeps the plain index).
    op.drop_index("ix_metric_points_subject", table_name="metric_points")
    op.create_index(
        "ix_metric_points_subject",
        "metric_points",
        ["subject_id", "name", "id"],
        unique=False,
        postgresql_include=["timestamp", "value"],
    )
    # BRIN on PostgreSQL; on SQLite the same name is a plain index.
    op.create_index(
        "ix_metric_points_timestamp",
        "metric_points",
        ["timestamp"],
        unique=False,
        postgresql_using="brin",
    )
    op.create_index(
        "ix_training_runs_project_id_status_id",
        "training_runs",
        ["project_id", "status", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_training_runs_project_id_status_id", table_name="training_runs")
    op.drop_index("ix_metric_points_timestamp", table_name="metric_points")
    op.drop_index("ix_metric_points_subject", table_name="metric_points")
    op.create_index(
        "ix_metric_points_subject", "metric_points", ["subject_id", "name", "id"], unique=False
    )
    op.drop_table("metric_retention")
    op.drop_index("ix_metric_batches_created_at", table_name="metric_batches")
    op.drop_table("metric_batches")
