"""The agent console and the shift board in a real headless browser (Debian's chromium).

Playwright drives the system browser; the worker, its broker and the pages are real. Set
SCREENSHOT_DIR to keep screenshots of both pages (the README's are made that way).
"""

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from access.roles import parse_roles
from streams.broker import EmbeddedBroker
from tests.integration.conftest import Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def site(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = start_worker(broker, tmp_path_factory.mktemp("pages"))
    running.access.add_user("agent.mei", PASSWORD, parse_roles("agent"))
    running.access.add_user("lead.tom", PASSWORD, parse_roles("shift_lead"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def logged_in(browser: Browser, site: Worker, name: str, locale: str = "en-US") -> Page:
    """A fresh browser context, logged in through the form, as a person would."""
    context = browser.new_context(locale=locale, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(site.base + "/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.base + "/")
    return page


def call(premise: str) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"page-{premise}-{time.time_ns()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "utility": "heat",
        "premise_id": premise,
        "symptom": "no_heat",
        "scope": "whole_building",
    }


def open_fault(site: Worker, building: str) -> str:
    for n in (1, 2, 3):
        assert site.post("/v1/calls", call(f"{building}-0{n}"))[0] == 202
    found = wait_for(
        lambda: (
            (a := site.get(f"/v1/outages?premise={building}-05")[1])["status"] == "known_fault"
            and a
        )
    )
    return str(found["incident"]["incident_id"])


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_an_agent_finds_the_known_fault_and_the_call_joins_it(
    site: Worker, browser: Browser
) -> None:
    """Search a flat in a building with a fault: the banner says so; a recorded call joins."""
    incident = open_fault(site, "P-HSUB2-B2")
    page = logged_in(browser, site, "agent.mei")
    page.goto(site.base + "/console")
    address = site.get("/v1/outages?premise=P-HSUB2-B2-06")[1]["address"]
    page.fill("#search", address[:6])
    expect(page.locator("#suggestions [role=option]").first).to_be_visible()  # type-ahead
    page.fill("#search", "P-HSUB2-B2-06")
    page.press("#search", "Enter")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Known fault")
    expect(banner).to_contain_text("neighbours called")
    page.locator("#call-form button[type=submit]").click()
    expect(page.locator("#call-outcome")).to_contain_text(f"Joined incident {incident}")
    screenshot(page, "console.png")

    page.fill("#search", "030 5552 0207")  # a caller's number, from the phone book
    page.press("#search", "Enter")
    expect(banner).to_contain_text("P-HSUB2-B2-07")
    expect(banner).to_contain_text("Known fault")

    page.fill("#search", "P-HSUB4-B1-01")  # a building nobody reported
    page.press("#search", "Enter")
    expect(banner).to_contain_text("No known fault here")


def test_the_console_speaks_chinese_when_the_browser_does(site: Worker, browser: Browser) -> None:
    """A zh browser gets Chinese labels; the language switch brings English back."""
    page = logged_in(browser, site, "agent.mei", locale="zh-CN")
    page.goto(site.base + "/console")
    expect(page.locator("html")).to_have_attribute("lang", "zh")
    chinese = page.locator("label[for=search]").inner_text()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese), chinese
    page.select_option("#lang", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.locator("label[for=search]").inner_text() != chinese


def test_a_shift_lead_sees_a_new_incident_live_and_acknowledges_it(
    site: Worker, browser: Browser
) -> None:
    """Without a reload the board shows the new incident; Acknowledge records the lead."""
    page = logged_in(browser, site, "lead.tom")
    page.goto(site.base + "/board")
    page.evaluate("window.notReloaded = true")
    incident = open_fault(site, "P-HSUB3-B4")
    row = page.locator(f'#incidents tr[data-incident="{incident}"]')
    expect(row).to_be_visible(timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "board.png")
    row.get_by_role("button", name="Acknowledge").click()
    wait_for(lambda: site.get(f"/v1/incidents/{incident}")[1]["acknowledged_by"] == "lead.tom")
    row.get_by_role("button", name="Timeline").click()
    expect(page.get_by_text("acknowledged by lead.tom")).to_be_visible(timeout=10_000)


def test_an_agent_may_not_open_the_board_and_pages_need_a_login(
    site: Worker, browser: Browser
) -> None:
    """No session: /console redirects to the login form; an agent's /board is a 403."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.base + "/console")
    assert page.url.startswith(site.base + "/login")
    agent = logged_in(browser, site, "agent.mei")
    response = agent.goto(site.base + "/board")
    assert response is not None and response.status == 403


def test_a_grouped_page_is_one_line_on_the_boards_alert_list(
    site: Worker, browser: Browser
) -> None:
    """Two buildings of one substation roll up into one incident: the one message sent for
    their alerts is one line on the board, saying how many alerts it carried."""
    for building in (1, 2):
        for flat in range(1, 6):
            assert site.post("/v1/calls", call(f"P-HSUB1-B{building}-{flat:02}"))[0] == 202

    def grouped() -> str | None:
        records = site.get("/v1/notifications")[1]["notifications"]
        carried = Counter(r["notification"] for r in records if r.get("notification"))
        return next((key for key, alerts in carried.items() if alerts > 1), None)

    wait_for(grouped, timeout=120)
    page = logged_in(browser, site, "lead.tom")
    page.goto(site.base + "/board")
    line = page.locator("#alerts li", has_text="one message for")
    expect(line.first).to_be_visible(timeout=15_000)
