"""/docs in headless Chromium with no network but the loopback: the page renders from the
package's own assets, Authorize takes an API key, and "Try it out" calls the API with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from app.domain.access import Role
from app.main import create_app
from app.settings import Settings
from tests.browser import offline_page
from tests.events.server import serve
from tests.factories import make_key, make_project
from tests.workers.conftest import UnitOfWork

pytestmark = pytest.mark.slow


@pytest.fixture
def live(settings: Settings, pg_engine: Engine, committed: UnitOfWork) -> Iterator[str]:
    with serve(create_app(settings, sessionmaker(bind=pg_engine, expire_on_commit=False))) as url:
        yield url


def test_authorize_and_try_an_endpoint_offline(live: str, committed: UnitOfWork) -> None:
    with committed() as session:
        key = make_key(session)
        project = make_project(session, (key, Role.VIEWER), name="docs-page-project")
    with offline_page() as (page_object, seen):
        page: Any = page_object
        page.goto(f"{live}/docs", wait_until="networkidle")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "Stratus" in page.inner_text(".swagger-ui .info .title")

        page.click("button.authorize")
        page.fill(".modal-ux input[type=text], .modal-ux input[type=password]", key.secret)
        page.click(".modal-ux .auth-btn-wrapper button.authorize")
        page.click(".modal-ux button.btn-done")

        summary = page.locator(".opblock-get .opblock-summary", has_text="/v1/projects").filter(
            has=page.locator("[data-path='/v1/projects']")
        )
        summary.first.click()
        block = page.locator(".opblock.is-open").first
        block.locator("button.try-out__btn").click()
        block.locator("button.execute").click()
        status = block.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=20_000)
        assert status.inner_text().strip().startswith("200")
        body = block.locator(".live-responses-table .highlight-code").first.inner_text()
        assert str(project.id) in body
        assert "docs-page-project" in body

    assert seen.refused == []  # nothing asked for outside the loopback
    assert any(
        url.endswith("/static/docs/swagger-ui/swagger-ui-bundle.js") for url in seen.requested
    )
    assert any(url.endswith("/v1/projects") for url in seen.requested)
