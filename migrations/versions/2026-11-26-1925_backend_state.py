"""backend state

Revision ID: a42a19c856ac
Revises: 7d89c3f437ba
Create Date: 2026-11-26 19:25:29.943389
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a42a19c856ac"
down_revision: str | None = "7d89c3f437ba"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "poll_cursors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("synced_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_poll_cursors")),
    )
    op.add_column(
        "deployments", sa.Column("instance_seconds", sa.Float(), server_default="0", nullable=False)
    )
    op.add_column(
        "deployments", sa.Column("capacity_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "deployments", sa.Column("metrics_synced_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "projects",
        sa.Column(
            "backend_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.add_column(
        "training_runs", sa.Column("secondary_status", sa.String(length=64), nullable=True)
    )
    op.add_column("training_runs", sa.Column("billable_seconds", sa.Float(), nullable=True))
    op.add_column(
        "training_runs", sa.Column("metrics_cursor", sa.String(length=255), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("training_runs", "metrics_cursor")
    op.drop_column("training_runs", "billable_seconds")
    op.drop_column("training_runs", "secondary_status")
    op.drop_column("projects", "backend_config")
    op.drop_column("deployments", "metrics_synced_until")
    op.drop_column("deployments", "capacity_since")
    op.drop_column("deployments", "instance_seconds")
    op.drop_table("poll_cursors")
