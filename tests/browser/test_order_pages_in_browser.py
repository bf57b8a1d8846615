"""A person's whole journey through the pages, in a real Chromium, against the real processes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from orders import services
from orders.models import Execution, Notification, Order, OrderStatus
from tests.browser.conftest import DESKTOP, PHONE, SCREENSHOTS, NewPage
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-browser-passphrase-42"
# Long enough for the scheduler, the worker and the page's 2 s refresh, short enough to fail fast.
LIVE_TIMEOUT_MS = 30_000


def _email(name: str) -> str:
    # Each test starts from an empty database, so readable addresses (they appear in the screenshots) suffice.
    return f"{name}@example.com"


def _wall_text(moment: datetime, tz: str) -> str:
    """The text a person types into a datetime-local input (browsers drop ':00' seconds)."""
    local = moment.astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%dT%H:%M:%S" if local.second else "%Y-%m-%dT%H:%M")


def sign_up(page: Page, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/orders/$"))
    expect(page.get_by_test_id("signed-in-email")).to_have_text(email)


def log_in(page: Page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def mark_page(page: Page) -> None:
    """Tag the current document: the tag survives live updates but not a reload or navigation."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def order_id_from(page: Page) -> int:
    match = re.search(r"/orders/(\d+)$", page.url)
    assert match, page.url
    return int(match.group(1))


def fill_order_form(
    page: Page,
    *,
    name: str,
    at: datetime,
    time_zone: str,
    recurring: bool = False,
    every: int | None = None,
    unit: str | None = None,
    max_executions: int | None = None,
) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Recurring" if recurring else "One-time").check()
    page.get_by_label("Time zone").select_option(time_zone)
    page.get_by_label("Schedule time").fill(_wall_text(at, time_zone))
    if recurring:
        assert every is not None and unit is not None
        page.get_by_label("Every").fill(str(every))
        page.get_by_label("Unit").select_option(unit)
        page.get_by_label("Max executions").fill("" if max_executions is None else str(max_executions))


def test_sign_up_log_in_and_watch_a_one_time_order_complete_without_reloading(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    email = _email("once")
    sign_up(page, email)
    log_out(page)
    page.goto("/orders/")
    expect(page).to_have_url(re.compile(r"/login\?next=/orders/$"))
    log_in(page, email)
    expect(page).to_have_url(re.compile(r"/orders/$"))

    page.get_by_role("link", name="New order").first.click()
    expect(page.get_by_role("heading", name="New order")).to_be_visible()
    due = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    fill_order_form(page, name="Buy 10 AAPL", at=due, time_zone="Asia/Tokyo")
    # The preview reads the wall time in the chosen zone, without saving anything.
    expected = due.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S JST")
    expect(page.get_by_test_id("preview-list")).to_have_text(expected)
    assert not Order.objects.filter(user__email=email).exists()
    page.get_by_role("button", name="Create order").click()

    order_id = order_id_from(page)
    order = Order.objects.get(pk=order_id)
    assert order.schedule_time == due and order.time_zone == "Asia/Tokyo"
    expect(page.get_by_test_id("order-status")).to_have_text("Scheduled")

    page.get_by_role("link", name="Orders", exact=True).click()
    row = page.locator(f"tr[data-order-id='{order_id}']")
    expect(row.get_by_test_id("order-status")).to_have_text("Scheduled")
    mark_page(page)
    expect(row.get_by_test_id("order-status")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)
    expect(row.get_by_test_id("order-count")).to_have_text("1 / 1")
    expect(row.get_by_test_id("order-last-result")).to_contain_text("Succeeded")
    assert_not_reloaded(page)
    assert Execution.objects.get(order_id=order_id).status == "succeeded"

    # The completion reached the notifications page; marking it read clears the header count.
    page.reload()
    expect(page.get_by_test_id("unread-count")).to_have_text("1")
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    expect(page.get_by_test_id("notification")).to_contain_text("Buy 10 AAPL")
    page.get_by_role("button", name="Mark read").click()
    expect(page.get_by_test_id("unread-count")).to_have_count(0)
    assert Notification.objects.get(user__email=email).read_at is not None


def test_recurring_order_counts_to_its_max_then_is_edited_converted_paused_resumed_and_deleted(
    new_page: NewPage, stack: Stack
) -> None:
    page = new_page()
    email = _email("dana")
    sign_up(page, email)

    page.goto("/orders/new")
    start = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    fill_order_form(
        page,
        name="Every 2 seconds",
        at=start,
        time_zone="UTC",
        recurring=True,
        every=2,
        unit="seconds",
        max_executions=3,
    )
    expect(page.get_by_test_id("preview-list").locator("li")).to_have_count(3)
    page.get_by_role("button", name="Create order").click()
    order_id = order_id_from(page)
    expect(page.get_by_test_id("order-type")).to_have_text("Every 2 seconds")

    # The detail page follows the runs by itself.
    mark_page(page)
    count = page.get_by_test_id("order-count")
    expect(count).to_have_text(re.compile(r"^[12] / 3$"), timeout=LIVE_TIMEOUT_MS)
    expect(count).to_have_text("3 / 3", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("order-status")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("execution-row")).to_have_count(3)
    assert_not_reloaded(page)
    assert list(Execution.objects.filter(order_id=order_id).values_list("status", flat=True)) == ["succeeded"] * 3
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "order-detail.png"), full_page=True)

    # Edit: a new name, interval and maximum; the anchor stays as it was.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Name").fill("Hourly top-up")
    page.get_by_label("Every").fill("1")
    page.get_by_label("Unit").select_option("hours")
    page.get_by_label("Max executions").fill("5")
    expect(page.get_by_test_id("preview-list").locator("li")).to_have_count(2)
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("order-name")).to_have_text("Hourly top-up")
    expect(page.get_by_test_id("order-type")).to_have_text("Every hour")
    expect(page.get_by_test_id("order-status")).to_have_text("Scheduled")
    expect(page.get_by_test_id("order-count")).to_have_text("3 / 5")
    expect(page.get_by_test_id("upcoming-runs").locator("li")).to_have_count(2)

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("order-status")).to_have_text("Paused")
    assert Order.objects.get(pk=order_id).status == OrderStatus.PAUSED
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("order-status")).to_have_text("Scheduled")
    assert Order.objects.get(pk=order_id).status == OrderStatus.SCHEDULED

    # Convert to one-time: a one-time order needs a time ahead.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("One-time").check()
    expect(page.get_by_label("Every")).to_be_hidden()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("error-schedule_time")).to_be_visible()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    page.get_by_label("Schedule time").fill(_wall_text(tomorrow, "UTC"))
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("order-type")).to_have_text("One-time")
    expect(page.get_by_test_id("order-count")).to_have_text("3 / 4")
    converted = Order.objects.get(pk=order_id)
    assert not converted.is_recurring and converted.next_run_at == tomorrow

    _dashboard_screenshot(page, email)

    # The dashboard and the detail page fit a phone: nothing scrolls sideways.
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    for path in ("/orders/", f"/orders/{order_id}"):
        page.goto(path)
        expect(page.get_by_test_id("order-status").first).to_be_visible()
        assert _fits_width(page), path
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]

    page.goto(f"/orders/{order_id}")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name=re.compile("Delete"))).to_be_visible()
    page.get_by_role("button", name="Delete order").click()
    expect(page).to_have_url(re.compile(r"/orders/$"))
    expect(page.locator(f"tr[data-order-id='{order_id}']")).to_have_count(0)
    assert not Order.objects.filter(pk=order_id).exists()

    log_out(page)
    for path in ("/orders/", f"/orders/{order_id}", "/orders/new", "/notifications/"):
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/login\?next="))


def test_a_failing_order_shows_its_error_and_can_be_run_now_and_retried(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    email = _email("failing")
    sign_up(page, email)
    page.goto("/orders/new")
    start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    fill_order_form(
        page, name="Poison pill", at=start, time_zone="UTC", recurring=True, every=1, unit="hours", max_executions=3
    )
    page.get_by_role("button", name="Create order").click()
    order_id = order_id_from(page)

    # Both attempts of run #1 fail; the page shows it as it happens.
    first = page.get_by_test_id("execution-row").filter(has_text="#1")
    expect(first.get_by_test_id("execution-status")).to_have_text("Failed", timeout=LIVE_TIMEOUT_MS)
    expect(first.get_by_test_id("execution-attempts")).to_have_text("2")
    expect(first.get_by_test_id("execution-error")).to_contain_text("poison order")
    expect(page.get_by_test_id("order-last-result")).to_contain_text("Failed")
    expect(page.get_by_test_id("order-status")).to_have_text("Scheduled")

    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("status")).to_contain_text("Run #2 started.")
    expect(page.get_by_test_id("order-count")).to_have_text("2 / 3")
    second = page.get_by_test_id("execution-row").filter(has_text="#2")
    expect(second).to_contain_text("manual")
    expect(second.get_by_test_id("execution-status")).to_have_text("Failed", timeout=LIVE_TIMEOUT_MS)

    page.get_by_role("button", name="Retry last failure").click()
    expect(page.get_by_role("status")).to_contain_text("Retrying run #2.")
    second = page.get_by_test_id("execution-row").filter(has_text="#2")
    expect(second.get_by_test_id("execution-attempts")).to_have_text("3", timeout=LIVE_TIMEOUT_MS)
    expect(second.get_by_test_id("execution-status")).to_have_text("Failed", timeout=LIVE_TIMEOUT_MS)
    attempts = dict(Execution.objects.filter(order_id=order_id).values_list("occurrence", "attempts"))
    assert attempts == {1: 2, 2: 3}

    page.goto("/notifications/")
    expect(page.get_by_test_id("notification").filter(has_text="run #1 failed for good")).to_have_count(1)


def _fits_width(page: Page) -> bool:
    widths: Any = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return bool(widths[0] <= widths[1])


def _dashboard_screenshot(page: Page, email: str) -> None:
    """Give the dashboard a few orders in different states, then photograph it for the README."""
    user = Order.objects.filter(user__email=email).first()
    assert user is not None
    owner = user.user
    later = datetime.now(UTC) + timedelta(days=2)
    weekly = services.order_create(
        user=owner,
        definition=services.OrderDefinition(
            order_name="Weekly restock",
            schedule_time=later,
            time_zone="Europe/Berlin",
            is_recurring=True,
            repeat_interval=1,
            repeat_unit="weeks",
            max_executions=10,
        ),
    )
    paused = services.order_create(
        user=owner,
        definition=services.OrderDefinition(
            order_name="Quarterly rebalance",
            schedule_time=later + timedelta(days=30),
            is_recurring=True,
            repeat_interval=13,
            repeat_unit="weeks",
        ),
    )
    services.order_pause(order=paused)
    page.goto("/orders/")
    expect(page.locator(f"tr[data-order-id='{weekly.pk}']")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_a_second_user_cannot_open_or_change_the_first_users_order(new_page: NewPage, stack: Stack) -> None:
    owner_page = new_page()
    sign_up(owner_page, _email("owner"))
    owner_page.goto("/orders/new")
    fill_order_form(owner_page, name="Private order", at=datetime.now(UTC) + timedelta(days=3), time_zone="UTC")
    owner_page.get_by_role("button", name="Create order").click()
    order_id = order_id_from(owner_page)

    # The outsider works on a phone-sized screen.
    outsider = new_page(viewport=PHONE, console_errors_expected=True)
    sign_up(outsider, _email("outsider"))
    for path in (f"/orders/{order_id}", f"/orders/{order_id}/edit", f"/orders/{order_id}/delete"):
        response = outsider.goto(path)
        assert response is not None and response.status == 404, path
    outsider.goto("/orders/")
    expect(outsider.get_by_text("Private order")).to_have_count(0)
    token = outsider.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    for action in ("pause", "delete", "run-now"):
        result = outsider.request.post(
            f"/orders/{order_id}/{action}",
            form={"csrfmiddlewaretoken": token},
            headers={"Referer": f"{stack.base_url}/orders/"},
        )
        assert result.status == 404, (action, result.status)
    order = Order.objects.get(pk=order_id)
    assert order.status == OrderStatus.SCHEDULED and order.executions_count == 0

    # The pages fit a phone: nothing scrolls sideways, and the form is reachable and labelled.
    outsider.goto("/orders/new")
    assert _fits_width(outsider)
    expect(outsider.get_by_label("Name")).to_be_visible()
    outsider.get_by_label("Name").focus()
    outsider.keyboard.press("Tab")
    focused = outsider.evaluate("document.activeElement.name")
    assert focused == "kind"
