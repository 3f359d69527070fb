"""``name@alias`` -> the model version it points at (for every API that takes a model)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.domain.aliases import repository
from app.domain.aliases.schemas import split_ref
from app.domain.model_versions import repository as models_repo
from app.domain.model_versions.models import ModelVersion
from app.errors import NotFound, Unprocessable


def resolve(session: Session, project_id: uuid.UUID, ref: str) -> ModelVersion:
    """The model version ``name@alias`` points at in the project (404 when it points nowhere)."""
    parts = split_ref(ref)
    if parts is None:
        raise Unprocessable(f"{ref!r} is not a name@alias model reference.", code="invalid_model")
    row = repository.get(session, project_id, *parts)
    model = None if row is None else models_repo.get(session, row.model_version_id)
    if model is None:
        raise NotFound(f"Model {parts[0]!r} has no alias {parts[1]!r}.")
    return model
