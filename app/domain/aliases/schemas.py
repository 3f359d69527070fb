"""Alias request and response models, and the ``name@alias`` reference form."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from app.domain.model_versions.schemas import FiniteFloat, MetricName
from app.domain.schemas import ReadModel, WriteModel

ALIAS = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
# A model reference: a registered model's name and one of its aliases.
MODEL_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}@[A-Za-z][A-Za-z0-9_-]{0,63}$"
Operator = Literal[">=", ">", "<=", "<", "=="]
Bounds = Annotated[dict[Operator, FiniteFloat], Field(min_length=1, max_length=5)]


def split_ref(ref: str) -> tuple[str, str] | None:
    """(name, alias) of a ``name@alias`` reference, or None when ``ref`` is not one."""
    if not re.match(MODEL_REF, ref):
        return None
    name, alias = ref.split("@", 1)
    return name, alias


class AliasSet(WriteModel):
    """Point an alias at a version; ``requires`` gates this and every later move."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": 1, "requires": {"ndcg_at_10": {">=": 0.05}}}]},
    )

    version: int = Field(ge=1, le=2**31 - 1, description="The version of the model to point at")
    requires: dict[MetricName, Bounds] | None = Field(
        default=None,
        max_length=50,
        description="Bounds on metrics of the version's latest completed evaluation, e.g. "
        '{"ndcg_at_10": {">=": 0.30}}; kept on the alias until changed ({} removes them). '
        "A move whose version fails them is refused with 409.",
    )


class AliasRead(ReadModel):
    project_id: uuid.UUID = Field(description="The project")
    name: str = Field(description="The registered model's name")
    alias: str = Field(description="The alias")
    version: int = Field(description="The version it points at")
    model_version_id: uuid.UUID = Field(description="The model version it points at")
    requires: dict[str, dict[str, float]] = Field(description="The gate every move must pass")
    updated_by: uuid.UUID | None = Field(description="Who moved it last")
    updated_at: datetime = Field(description="When it moved last")
