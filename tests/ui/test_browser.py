"""The console in a real headless Chromium against `stratus dev`: sign in, see a finished run's
charts drawn, compare two runs, read a deployment's decisions, stop a run from its button, and
no request to any host but the dev server. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser import CHROMIUM, require_chromium
from tests.devserver import REPO, checkout_dev
from tests.test_embedded import Dev
from tests.ui.scene import Scene, build

pytestmark = pytest.mark.slow

SHOTS = REPO / "artifacts" / "screenshots"
WAIT_MS = 30_000

# Whether any pixel of the chart canvases was drawn (not transparent).
CANVASES_DRAWN = """
() => {
  const canvases = [...document.querySelectorAll('.charts canvas')];
  return canvases.length > 0 && canvases.every((c) => {
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
    return false;
  });
}
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dev, Scene]]:
    require_chromium()
    workdir = tmp_path_factory.mktemp("console")
    with checkout_dev(workdir) as server:
        key = (server.data_dir / "admin-key").read_text().strip()
        try:
            scene = build(server.base_url, key, server.data_dir, workdir)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{server.logs()}") from error
        yield server, scene


@pytest.fixture(scope="module")
def browser(dev: tuple[Dev, Scene]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def _signed_in_page(browser: Any, server: Dev, hosts: list[str], **context: Any) -> Any:
    context.setdefault("viewport", {"width": 1280, "height": 900})
    page = browser.new_context(**context).new_page()
    page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
    page.set_default_timeout(WAIT_MS)
    page.goto(server.base_url + "/ui/")
    assert "/ui/login" in page.url
    page.fill("#api_key", (server.data_dir / "admin-key").read_text().strip())
    page.keyboard.press("Enter")  # the keyboard alone signs in
    page.wait_for_url(server.base_url + "/ui/")
    return page


def _charts_drawn(page: Any, count: int) -> None:
    page.wait_for_function(
        "(n) => document.querySelectorAll('.charts canvas').length >= n", arg=count
    )
    page.wait_for_function(CANVASES_DRAWN)


def test_console_end_to_end(browser: Any, dev: tuple[Dev, Scene]) -> None:
    server, scene = dev
    hosts: list[str] = []
    page = _signed_in_page(browser, server, hosts)
    assert page.get_by_role("link", name="console-e2e").is_visible()
    page.screenshot(path=SHOTS / "01-projects.png", full_page=True)

    page.get_by_role("link", name="console-e2e").click()
    assert page.locator("#runs-h").is_visible()
    page.screenshot(path=SHOTS / "02-project.png", full_page=True)

    first, second = scene.runs
    page.get_by_role("link", name=first["name"]).click()
    _charts_drawn(page, 4)  # loss, precision, recall and ndcg
    assert page.locator(".summary .status").inner_text() == "completed"
    assert f"{first['name']} v1" in page.locator("#run-summary").inner_text()
    page.wait_for_function("() => document.querySelector('#run-log').textContent.includes('loss=')")
    page.screenshot(path=SHOTS / "03-run-finished.png", full_page=True)
    page.get_by_label("step").check()  # the same metrics against the training step
    page.wait_for_function("() => document.querySelectorAll('.charts figure').length === 4")
    _charts_drawn(page, 4)
    page.screenshot(path=SHOTS / "03b-run-by-step.png", full_page=True)

    page.go_back()
    page.get_by_label(f"Compare {first['name']}").check()
    page.get_by_label(f"Compare {second['name']}").check()
    page.get_by_role("button", name="Compare selected runs").click()
    page.wait_for_url("**/ui/compare?**")
    _charts_drawn(page, 4)
    differing = page.locator("tr.differs th").all_inner_texts()
    assert [text.split()[0] for text in differing] == ["epochs", "lr"]
    page.screenshot(path=SHOTS / "04-compare.png", full_page=True)

    page.goto(f"{server.base_url}/ui/deployments/{scene.deployment['id']}")
    _charts_drawn(page, 2)
    rows = page.locator("#decision-rows > tr")
    assert rows.count() == 3
    rows.nth(1).locator("summary").click()
    assert rows.nth(1).locator("table.candidates").is_visible()
    page.screenshot(path=SHOTS / "05-deployment.png", full_page=True)
    page.fill("#wi-instances", "1,2,3")
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_selector("#what-if [role=status]")
    page.screenshot(path=SHOTS / "06-deployment-what-if.png", full_page=True)

    page.goto(f"{server.base_url}/ui/runs/{scene.sleeper['id']}")
    page.wait_for_function("() => document.querySelector('#run-log').textContent.includes('tick=')")
    page.get_by_role("button", name="Stop run").click()
    page.wait_for_function(
        "() => ['stopping', 'stopped'].includes(document.querySelector('.summary .status')"
        ".textContent)"
    )
    # Live updates carry the run on to stopped without a reload.
    page.wait_for_function(
        "() => document.querySelector('.summary .status').textContent === 'stopped'",
        timeout=90_000,
    )
    assert page.locator("#stop-run").count() == 0
    page.screenshot(path=SHOTS / "07-run-stopped.png", full_page=True)

    assert set(hosts) == {urlsplit(server.base_url).netloc}, set(hosts)


def test_dark_theme_and_phone_width(browser: Any, dev: tuple[Dev, Scene]) -> None:
    server, scene = dev
    hosts: list[str] = []
    dark = _signed_in_page(browser, server, hosts, color_scheme="dark")
    dark.goto(f"{server.base_url}/ui/deployments/{scene.deployment['id']}")
    _charts_drawn(dark, 2)
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    dark.screenshot(path=SHOTS / "08-deployment-dark.png", full_page=True)

    phone = _signed_in_page(
        browser, server, hosts, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    phone.goto(f"{server.base_url}/ui/runs/{scene.runs[0]['id']}")
    _charts_drawn(phone, 4)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width  # nothing wider than the screen: tables scroll in their box
    phone.screenshot(path=SHOTS / "09-run-phone.png", full_page=True)
    assert set(hosts) == {urlsplit(server.base_url).netloc}, set(hosts)
