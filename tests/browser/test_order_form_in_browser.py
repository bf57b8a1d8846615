"""The order form in a real Chromium: the run-time preview as a person fills the form in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, expect

from accounts.models import User
from tests.browser.conftest import NewPage
from tests.browser.test_order_pages_in_browser import PASSWORD, _wall_text, sign_up
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Recorded:
    """Everything the console says (not only errors: the suite's own filter lets "Failed to load
    resource" through) and every preview request with its answer."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.previews: list[tuple[str, int]] = []
        page.on("console", self._on_console)
        page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def _on_response(self, response: Response) -> None:
        if "preview.json" in response.url:
            self.previews.append((response.request.method, response.status))


def test_filling_the_form_key_by_key_logs_nothing_and_every_preview_answers_200(
    new_page: NewPage, stack: Stack
) -> None:
    page = new_page()
    sign_up(page, "typist@example.com")
    page.goto("/orders/new")
    recorded = Recorded(page)

    # Field by field, as a person does: the preview is asked for while the form is half filled.
    is_preview = lambda response: "preview.json" in response.url  # noqa: E731
    with page.expect_response(is_preview):
        page.get_by_label("Schedule time").fill("")
    with page.expect_response(is_preview):
        page.get_by_label("Name").press_sequentially("Top up " + "x" * 300, delay=2)
    with page.expect_response(is_preview):
        page.get_by_label("Recurring").check()
    page.get_by_label("Every").press_sequentially("15")
    page.get_by_label("Unit").select_option("minutes")
    page.get_by_label("Time zone").select_option("America/New_York")
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    page.get_by_label("Schedule time").fill(_wall_text(start, "America/New_York"))
    page.get_by_label("Max executions").press_sequentially("3")

    first = start.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M:%S %Z")
    expect(page.get_by_test_id("preview-list").locator("li")).to_have_count(3)
    expect(page.get_by_test_id("preview-list").locator("li").first).to_have_text(first)
    # A name longer than a query string allows does not break it either.
    expect(page.locator("#preview-status")).to_have_text("")
    page.wait_for_timeout(500)
    assert len(recorded.previews) >= 4, recorded.previews
    assert set(recorded.previews) == {("POST", 200)}, recorded.previews
    assert recorded.console == []


def test_a_past_time_is_never_previewed_as_the_next_run(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    sign_up(page, "late@example.com")
    page.goto("/orders/new")
    recorded = Recorded(page)
    page.get_by_label("Time zone").select_option("UTC")
    page.get_by_label("Schedule time").fill(_wall_text(datetime.now(UTC) - timedelta(hours=2), "UTC"))

    expect(page.locator("#preview-status")).to_contain_text("This time has passed")
    expect(page.get_by_test_id("preview-list").locator("li")).to_have_count(0)

    # Recurring from that past anchor: only times still ahead are listed.
    page.get_by_label("Recurring").check()
    page.get_by_label("Every").fill("1")
    page.get_by_label("Unit").select_option("hours")
    page.get_by_label("Max executions").fill("4")
    items = page.get_by_test_id("preview-list").locator("li")
    expect(items).to_have_count(4)
    now = datetime.now(UTC)
    for text in items.all_inner_texts():
        assert datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC) > now, text
    assert recorded.console == []


@pytest.mark.parametrize("browser_zone", ["Asia/Kolkata", "Asia/Calcutta"])
def test_sign_up_starts_at_the_browsers_zone_and_the_search_narrows_the_list(
    new_page: NewPage, stack: Stack, browser_zone: str
) -> None:
    # Asia/Calcutta is the old name some browsers still report: the list has Asia/Kolkata.
    page = new_page(timezone_id=browser_zone)
    email = f"{browser_zone.split('/')[1].lower()}@example.com"
    page.goto("/signup")
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Kolkata")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("signed-in-email")).to_have_text(email)
    assert User.objects.get(email=email).time_zone == "Asia/Kolkata"

    page.goto("/orders/new")
    zone = page.get_by_label("Time zone")
    expect(zone).to_have_value("Asia/Kolkata")
    page.get_by_label("Find a zone").fill("new york")
    expect(zone).to_have_value("America/New_York")
    # Only matching names are left to choose from.
    assert zone.locator("option:not([hidden])").all_inner_texts() == ["America/New_York"]
    expect(page.locator("#preview-zone")).to_have_text("(America/New_York)")
    page.get_by_test_id("use-browser-zone").click()
    expect(zone).to_have_value("Asia/Kolkata")
    expect(page.locator("#preview-zone")).to_have_text("(Asia/Kolkata)")

    page.goto("/account")
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Kolkata")
