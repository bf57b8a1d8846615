"""The order form in a real Chromium: the run-time preview as a person fills the form in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, expect

from tests.browser.conftest import NewPage
from tests.browser.test_order_pages_in_browser import _wall_text, sign_up
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
    page.get_by_label("Name").fill("")
    page.get_by_label("Schedule time").fill("")
    page.get_by_label("Name").press_sequentially("Top up " + "x" * 300, delay=2)
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
    assert len(recorded.previews) >= 3, recorded.previews
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
