"""Headless Chromium (Debian's ``chromium``) for tests of pages, with the network cut off:
only the loopback is reachable, as on a machine without internet access."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


@dataclass
class Offline:
    """Every URL the page asked for, and those refused for leaving the loopback."""

    requested: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def require_chromium() -> None:
    """Skip without Debian's chromium; with STRATUS_REQUIRE_SERVICES (CI), fail instead."""
    if shutil.which(CHROMIUM) is None:
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("STRATUS_REQUIRE_SERVICES"):
            pytest.fail(missing)
        pytest.skip(missing)


@contextmanager
def offline_page() -> Iterator[tuple[object, Offline]]:
    """A Playwright page whose every request off the loopback fails, as with no network."""
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    seen = Offline()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # No DNS either: a CDN name cannot even be resolved.
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
        )
        try:
            context = browser.new_context()

            def gate(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                seen.requested.append(url)
                if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    seen.refused.append(url)
                    route.abort("internetdisconnected")  # type: ignore[attr-defined]

            context.route("**/*", gate)
            yield context.new_page(), seen
        finally:
            browser.close()
