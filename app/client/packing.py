"""Packing a directory for upload as a code bundle: the server package's one packer, which
the client, the CLI and ``stratus demo`` share (the same directory gives the same bundle)."""

from __future__ import annotations

from app.domain.bundles.packing import (
    ALWAYS_SKIPPED_DIRS,
    ALWAYS_SKIPPED_FILES,
    IGNORE_FILE,
    Packed,
    Rule,
    ignored,
    parse_ignore,
    walk,
)
from app.domain.bundles.packing import pack_directory_to as pack_directory

__all__ = [
    "ALWAYS_SKIPPED_DIRS",
    "ALWAYS_SKIPPED_FILES",
    "IGNORE_FILE",
    "Packed",
    "Rule",
    "ignored",
    "pack_directory",
    "parse_ignore",
    "walk",
]
