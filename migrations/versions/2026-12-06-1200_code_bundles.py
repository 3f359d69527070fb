"""code bundles: a project's content-addressed tarballs of training code

Revision ID: 4f7a2c9e1b60
Revises: 8d2c6a0e5f13
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4f7a2c9e1b60"
down_revision: str | None = "8d2c6a0e5f13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_bundles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("unpacked_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "manifest",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_code_bundles_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_bundles")),
        sa.UniqueConstraint(
            "project_id", "sha256", name=op.f("uq_code_bundles_project_id_sha256")
        ),
    )
    op.create_index(
        "ix_code_bundles_project_id_id",
        "code_bundles",
        ["project_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_code_bundles_project_id_id", table_name="code_bundles")
    op.drop_table("code_bundles")
