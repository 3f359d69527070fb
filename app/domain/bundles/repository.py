"""Every query on code bundles."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.bundles.models import CodeBundle
from app.domain.pagination import PageRequest, paginate


def get(session: Session, bundle_id: uuid.UUID) -> CodeBundle | None:
    return session.get(CodeBundle, bundle_id)


def get_by_sha256(session: Session, project_id: uuid.UUID, sha256: str) -> CodeBundle | None:
    return session.scalar(
        select(CodeBundle).where(CodeBundle.project_id == project_id, CodeBundle.sha256 == sha256)
    )


def list_for_project(
    session: Session, project_id: uuid.UUID, page: PageRequest
) -> tuple[Sequence[CodeBundle], str | None]:
    stmt = select(CodeBundle).where(CodeBundle.project_id == project_id)
    return paginate(session, stmt, CodeBundle.id, page)
