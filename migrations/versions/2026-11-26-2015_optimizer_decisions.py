"""optimizer decisions

Revision ID: 7c66531f45a6
Revises: 59fb02d97685
Create Date: 2026-11-26 20:15:04.112546
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7c66531f45a6"
down_revision: str | None = "59fb02d97685"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "optimizer_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("previous_instances", sa.Integer(), nullable=False),
        sa.Column("desired_instances", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_optimizer_decisions_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizer_decisions")),
        sa.UniqueConstraint(
            "deployment_id",
            "window_end",
            name=op.f("uq_optimizer_decisions_deployment_id_window_end"),
        ),
    )
    op.create_index(
        "ix_optimizer_decisions_deployment_id_id",
        "optimizer_decisions",
        ["deployment_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_optimizer_decisions_deployment_id_id", table_name="optimizer_decisions")
    op.drop_table("optimizer_decisions")
