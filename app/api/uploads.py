"""Request bodies streamed to a temporary file, hashed and counted, never held whole."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request

from app.domain.bundles.schemas import Upload
from app.errors import BadRequest, PayloadTooLarge


@contextlib.asynccontextmanager
async def spooled_body(request: Request, max_bytes: int) -> AsyncIterator[Upload]:
    """The body in a private temporary file (removed afterwards); 413 past ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The request body is over the limit of {max_bytes} bytes.")
    fd, name = tempfile.mkstemp(prefix="stratus-upload-", suffix=".part")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"The request body is over the limit of {max_bytes} bytes."
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise BadRequest("The request body is empty; send the bundle's bytes.")
        yield Upload(path, digest.hexdigest(), size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
