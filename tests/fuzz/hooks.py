"""Schemathesis hooks for the fuzz run (loaded through ``SCHEMATHESIS_HOOKS``).

- Code-bundle uploads take a gzip'd tarball, a media type Schemathesis cannot generate on its
  own: it gets valid bundles, bundles with members the server must refuse, and plain noise.
- An ``Idempotency-Key`` drawn twice with the same body replays the first answer, by design,
  even after the object it created was deleted; Schemathesis' stateful check reads that as
  "created resource not found". Keys are made unique per request (their length and emptiness
  kept), so each create is a create; the idempotency rules have their own tests.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import uuid
from typing import Any

import schemathesis
from hypothesis import strategies as st


def _tarball(*members: tuple[str, bytes, bytes]) -> bytes:
    """A gzip'd tar of (name, type, data) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                data = b""
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GOOD = _tarball(("train.py", tarfile.REGTYPE, b"print('loss=0.5')\n"))
REFUSED = [
    _tarball(("/etc/evil", tarfile.REGTYPE, b"x")),
    _tarball(("../escape.py", tarfile.REGTYPE, b"x")),
    _tarball(("link", tarfile.SYMTYPE, b"/etc/passwd")),
    _tarball(("dev", tarfile.CHRTYPE, b"")),
]
BUNDLES = st.one_of(
    st.just(GOOD),
    st.sampled_from(REFUSED),
    st.binary(max_size=512),
    st.binary(max_size=512).map(gzip.compress),
)
schemathesis.openapi.media_type("application/gzip", BUNDLES)
schemathesis.openapi.media_type("application/x-gzip", BUNDLES)


@schemathesis.hook
def map_headers(_ctx: Any, headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers and headers.get("Idempotency-Key"):
        key = headers["Idempotency-Key"]
        unique = uuid.uuid4().hex[:16]
        headers["Idempotency-Key"] = (key[: 255 - len(unique) - 1] + "-" + unique)[:255]
    return headers
