"""Fixtures of the event tests; the worker tests' committed data and settings on the test
database are shared from there."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.domain.access import Role
from tests.factories import make_key, make_project
from tests.workers.conftest import (  # noqa: F401 - fixtures
    app_on_pg,
    celery_queue,
    committed,
)


@pytest.fixture
def owner(db: Session) -> Any:
    """(key, project): a committed project owned by a key of its own."""
    key = make_key(db)
    project = make_project(db, (key, Role.OWNER))
    db.commit()
    return key, project
