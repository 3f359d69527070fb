"""API key request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AliasChoices, ConfigDict, Field

from app.domain.schemas import ReadModel, WriteModel


class ApiKeyCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci-pipeline", "admin": False}]},
    )

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[\w .@:/-]+$",
        description="A name that says who uses the key.",
    )
    admin: bool = Field(
        default=False, description="Whether the key may manage keys and see every project."
    )


class ApiKeyRead(ReadModel):
    id: uuid.UUID = Field(description="The key's id (not its secret).")
    name: str = Field(description="The key's name.")
    prefix: str = Field(description="The secret's first characters, to recognise it.")
    admin: bool = Field(
        validation_alias=AliasChoices("is_admin", "admin"),
        description="Whether it is an admin key.",
    )
    created_at: datetime = Field(description="When it was issued (UTC).")
    revoked_at: datetime | None = Field(description="When it was revoked; null while it works.")


# A note about the secret, not one.
SHOWN_ONCE_NOTE = (
    "The secret was shown only once, in the first response to this request; it is not "
    "stored and cannot be shown again. Revoke this key and create another if it was lost."
)


class ApiKeyCreated(ApiKeyRead):
    """Returned once, at creation: the only time the secret is ever shown. A replay of the
    creating request (same Idempotency-Key) answers with ``secret`` null and a note."""

    secret: str | None = Field(
        description="The key itself (`sk_…`), shown only in the first response; null in a replay."
    )
    secret_note: str | None = Field(
        default=None, description="In a replay: why the secret is not shown."
    )

    def without_secret(self) -> ApiKeyCreated:
        """What a replay of the creating request answers: everything but the secret."""
        return self.model_copy(update={"secret": None, "secret_note": SHOWN_ONCE_NOTE})
