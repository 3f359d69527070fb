"""metric purges: subjects of deleted projects whose points housekeeping still has to delete

Revision ID: 8d2c6a0e5f13
Revises: 3b9e4f1c7d20
Create Date: 2026-11-26 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d2c6a0e5f13"
down_revision: str | None = "3b9e4f1c7d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_purges",
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_metric_purges")),
    )
    # Projects deleted before this revision left their points behind: queue every subject that
    # has points but no run or deployment. The recursive walk probes the series index once per
    # distinct subject instead of reading every point.
    op.execute(
        """
        WITH RECURSIVE subjects(id) AS (
            SELECT (SELECT subject_id FROM metric_points ORDER BY subject_id LIMIT 1)
            UNION ALL
            SELECT (
                SELECT subject_id FROM metric_points WHERE subject_id > subjects.id
                ORDER BY subject_id LIMIT 1
            )
            FROM subjects WHERE subjects.id IS NOT NULL
        )
        INSERT INTO metric_purges (subject_id, project_id, requested_at)
        SELECT id,
               (SELECT project_id FROM metric_points WHERE subject_id = subjects.id LIMIT 1),
               CURRENT_TIMESTAMP
        FROM subjects
        WHERE id IS NOT NULL
          AND id NOT IN (SELECT id FROM training_runs)
          AND id NOT IN (SELECT id FROM deployments)
        """
    )


def downgrade() -> None:
    op.drop_table("metric_purges")
