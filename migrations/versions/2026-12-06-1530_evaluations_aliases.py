"""evaluations, model aliases, deployments following an alias, non-finite metric values

Revision ID: 6c9f2e4d8b31
Revises: 9f2c5b7a1e64
Create Date: 2026-12-06 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "6c9f2e4d8b31"
down_revision: str | None = "9f2c5b7a1e64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("model_version_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("final_metrics", JSON, nullable=False),
        sa.Column("secondary_status", sa.String(length=64), nullable=True),
        sa.Column("billable_seconds", sa.Float(), nullable=True),
        sa.Column("metrics_cursor", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_evaluations_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_evaluations_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index("ix_evaluations_project_id_id", "evaluations", ["project_id", "id"])
    op.create_index(
        "ix_evaluations_model_version_id_id", "evaluations", ["model_version_id", "id"]
    )
    op.create_index(op.f("ix_evaluations_status"), "evaluations", ["status"])
    op.create_table(
        "model_aliases",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Uuid(), nullable=False),
        sa.Column("requires", JSON, nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_model_aliases_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_aliases_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "name", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_index(
        op.f("ix_model_aliases_model_version_id"), "model_aliases", ["model_version_id"]
    )
    op.add_column("deployments", sa.Column("follows", sa.String(length=170), nullable=True))
    # NaN has no place in SQLite's REAL (it reads back as NULL): a NULL value is NaN.
    with op.batch_alter_table("metric_points") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metric_points WHERE value IS NULL")
    with op.batch_alter_table("metric_points") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=False)
    op.drop_column("deployments", "follows")
    op.drop_index(op.f("ix_model_aliases_model_version_id"), table_name="model_aliases")
    op.drop_table("model_aliases")
    op.drop_index(op.f("ix_evaluations_status"), table_name="evaluations")
    op.drop_index("ix_evaluations_model_version_id_id", table_name="evaluations")
    op.drop_index("ix_evaluations_project_id_id", table_name="evaluations")
    op.drop_table("evaluations")
