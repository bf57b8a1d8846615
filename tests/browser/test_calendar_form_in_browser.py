"""The create form's calendar schedule in a real Chromium: a preset fills the cron field, and the words
and the next runs follow while the user types."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from orders.models import Order
from tests.browser.conftest import NewPage
from tests.browser.test_order_pages_in_browser import order_id_from, sign_up
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_preset_fills_the_cron_field_and_the_words_and_runs_follow_the_typing(
    new_page: NewPage, stack: Stack
) -> None:
    page = new_page()
    sign_up(page, "cron@example.com")
    page.goto("/orders/new")
    page.get_by_label("Name").fill("Morning report")
    page.get_by_label("Recurring").check()
    page.get_by_label("Unlimited executions").check()
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    page.get_by_label("Schedule time").fill(f"{tomorrow}T07:45")
    expect(page.get_by_label("Cron expression")).to_be_hidden()
    page.get_by_label("On a calendar (cron)").check()
    expect(page.get_by_label("Every", exact=True)).to_be_hidden()
    page.get_by_role("button", name="Every weekday at\u2026").click()
    expect(page.get_by_label("Cron expression")).to_have_value("45 7 * * 1-5")
    words = page.get_by_test_id("preview-words")
    expect(words).to_have_text("At 07:45, Monday through Friday (Europe/Berlin)")
    runs = page.get_by_test_id("preview-list").locator("li")
    expect(runs).to_have_count(5)
    expect(runs.first).to_contain_text(" 07:45:00 ")
    # Typing changes the words without a reload.
    page.get_by_label("Cron expression").fill("0 9 1 * *")
    expect(words).to_have_text("At 09:00, on day 1 of the month (Europe/Berlin)")
    page.get_by_label("Cron expression").fill("61 * * * *")
    expect(page.get_by_text(re.compile("61 is out of range"))).to_be_visible()
    page.get_by_label("Cron expression").fill("30 9 * * MON")
    expect(words).to_have_text("At 09:30, only on Monday (Europe/Berlin)")
    page.get_by_role("button", name="Create order").click()
    order = Order.objects.get(pk=order_id_from(page))
    assert order.cron == "30 9 * * MON" and order.repeat_interval is None
    expect(page.get_by_test_id("order-schedule-words")).to_have_text("At 09:30, only on Monday (Europe/Berlin)")
