"""Every page in a real Chromium: axe-core in light and dark, the skip link, dark mode, the phone
layouts, sorting, Duplicate and the password reset. `make screenshots` refreshes the README's
phone and dark screenshots from here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from accounts.models import User
from orders import services
from orders.models import Execution, ExecutionStatus, Notification, Order
from tests.browser.conftest import PHONE, SCREENSHOTS, NewPage
from tests.browser.test_order_pages_in_browser import PASSWORD, log_out, sign_up
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = Axe()
BLOCKING = ("serious", "critical")
ANONYMOUS_PAGES = ["/login", "/signup", "/password-reset", "/password-reset/sent"]


def _populate(email: str) -> dict[str, int]:
    """A dashboard worth looking at: orders in several states, one with a failed and a good run."""
    user = User.objects.get(email=email)
    later = datetime.now(UTC) + timedelta(days=2)

    def create(name: str, **extra: Any) -> Order:
        definition = services.OrderDefinition(order_name=name, schedule_time=extra.pop("at", later), **extra)
        return services.order_create(user=user, definition=definition)

    create("Buy 10 AAPL", at=later + timedelta(hours=3))
    weekly = create(
        "Weekly restock of the warehouse on the north side",
        time_zone="Europe/Berlin",
        is_recurring=True,
        repeat_interval=1,
        repeat_unit="weeks",
        max_executions=10,
    )
    paused = create("Quarterly rebalance", is_recurring=True, repeat_interval=13, repeat_unit="weeks")
    services.order_pause(order=paused)
    now = datetime.now(UTC)
    for occurrence, status, error in ((1, ExecutionStatus.FAILED, "the exchange refused it"), (2, "succeeded", "")):
        Execution.objects.create(
            order=weekly,
            occurrence=occurrence,
            scheduled_for=now - timedelta(hours=3 - occurrence),
            started_at=now - timedelta(hours=3 - occurrence),
            finished_at=now - timedelta(hours=3 - occurrence, seconds=-2),
            status=status,
            attempts=2 if error else 1,
            error=error,
        )
    Order.objects.filter(pk=weekly.pk).update(executions_count=2, last_result="succeeded", last_run_at=now)
    Notification.objects.create(user=user, order=weekly, kind="failed", message="Run #1 of the restock failed")
    return {"weekly": weekly.pk, "paused": paused.pk}


def _signed_in_pages(ids: dict[str, int]) -> list[str]:
    weekly = ids["weekly"]
    return [
        "/orders/",
        "/orders/?sort=-next_run",
        "/orders/new",
        f"/orders/new?from={weekly}",
        f"/orders/{weekly}",
        f"/orders/{weekly}/edit",
        f"/orders/{weekly}/delete",
        "/notifications/",
        "/account",
    ]


def _blocking_violations(page: Page) -> list[str]:
    results = AXE.run(page, options={"resultTypes": ["violations", "passes"]})
    # The engine did run: it checked (and passed) some rules on this page.
    assert results.response["testEngine"]["name"] == "axe-core" and results.response["passes"], page.url
    return [
        f"{page.url}: {v['impact']} {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def test_axe_reports_a_violation_it_is_shown(new_page: NewPage, stack: Stack) -> None:
    # The check below cannot pass by not looking: the same call finds a planted defect.
    page = new_page()
    page.goto("/login")
    page.evaluate("document.querySelector('label[for=id_email]').remove()")
    assert any(" label " in line or "(Form elements must have labels)" in line for line in _blocking_violations(page))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violation_on_any_page(new_page: NewPage, stack: Stack, scheme: str) -> None:
    found: list[str] = []
    page = new_page(color_scheme=scheme)
    for path in ANONYMOUS_PAGES:
        page.goto(path)
        found += _blocking_violations(page)
    email = f"axe-{scheme}@example.com"
    sign_up(page, email)
    ids = _populate(email)
    for path in _signed_in_pages(ids):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found += _blocking_violations(page)
    # The phone layouts are different markup in effect (grid cards, hidden headers).
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    for path in ("/orders/", f"/orders/{ids['weekly']}", "/orders/new"):
        page.goto(path)
        found += _blocking_violations(page)
    assert found == [], "\n".join(found)


def test_the_skip_link_is_the_first_stop_and_moves_focus_to_the_content(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    sign_up(page, "keyboard@example.com")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The next Tab goes into the content, past the header's links.
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('main').contains(document.activeElement)")


def _background_luminance(page: Page) -> float:
    rgb: Any = page.evaluate("getComputedStyle(document.body).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)")
    return float(0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255


def test_dark_mode_follows_the_systems_preference(new_page: NewPage, stack: Stack) -> None:
    light = new_page(color_scheme="light")
    light.goto("/login")
    assert _background_luminance(light) > 0.8

    dark = new_page(color_scheme="dark")
    email = "night@example.com"
    sign_up(dark, email)
    ids = _populate(email)
    for path in ("/orders/", f"/orders/{ids['weekly']}", "/orders/new", "/account"):
        dark.goto(path)
        assert _background_luminance(dark) < 0.15, path
        # Cards and form controls are dark too, not white boxes on a dark page.
        card: Any = dark.evaluate(
            "getComputedStyle(document.querySelector('.card, .auth-card, table, .filters')).backgroundColor"
        )
        assert card not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), (path, card)
    dark.goto("/orders/")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dark.screenshot(path=str(SCREENSHOTS / "dashboard-dark.png"), full_page=True)


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}


def test_on_a_phone_an_order_is_a_four_line_card_and_a_run_leaves_out_an_empty_error(
    new_page: NewPage, stack: Stack
) -> None:
    page = new_page(viewport=PHONE)
    email = "phone@example.com"
    sign_up(page, email)
    ids = _populate(email)

    page.goto("/orders/")
    row = f"tr[data-order-id='{ids['weekly']}']"
    expect(page.locator(row)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    name, status, card = _box(page, f"{row} .c-name"), _box(page, f"{row} .c-status"), _box(page, row)
    # Status beside the name, on its right; the card stays inside the screen and short.
    assert status["x"] > name["x"] + name["width"] - 1 and abs(status["y"] - name["y"]) < 12
    assert card["x"] >= 0 and card["x"] + card["width"] <= PHONE["width"]
    line = float(page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)"))
    # Below the name (which may wrap): type and count, next run, last result; three lines, not seven.
    assert card["height"] - name["height"] < 4.5 * line, (card, name)  # with padding and gaps
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-phone.png"), full_page=True)

    page.goto(f"/orders/{ids['weekly']}")
    rows = page.get_by_test_id("execution-row")
    expect(rows).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    good, failed = rows.filter(has_text="#2"), rows.filter(has_text="#1")
    expect(good.get_by_test_id("execution-error")).to_be_hidden()
    expect(failed.get_by_test_id("execution-error")).to_have_text("the exchange refused it")
    # A run: number, attempts and result, then due, started and finished, one line each (+ its error).
    for run, lines in ((good, 4), (failed, 5)):
        box = run.bounding_box()
        assert box is not None and box["height"] < (lines + 1.5) * line, box  # with padding and gaps
    page.screenshot(path=str(SCREENSHOTS / "order-detail-phone.png"), full_page=True)


def test_clicking_a_column_header_sorts_the_dashboard_and_clicking_again_reverses_it(
    new_page: NewPage, stack: Stack
) -> None:
    page = new_page()
    email = "sorter@example.com"
    sign_up(page, email)
    _populate(email)
    page.goto("/orders/")
    names = page.get_by_test_id("order-link")

    page.get_by_test_id("sort-name").click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Name")
    ascending = names.all_inner_texts()
    assert ascending == sorted(ascending, key=str.lower) and len(ascending) == 3
    page.get_by_test_id("sort-name").click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    assert names.all_inner_texts() == ascending[::-1]
    # A filter keeps the sort.
    page.get_by_label("Status").select_option("scheduled")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    assert names.all_inner_texts() == [n for n in ascending[::-1] if n != "Quarterly rebalance"]


def test_duplicate_opens_a_prefilled_create_form_that_makes_a_second_order(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    email = "copier@example.com"
    sign_up(page, email)
    ids = _populate(email)
    page.goto(f"/orders/{ids['weekly']}")
    page.get_by_role("link", name="Duplicate").click()

    expect(page.get_by_role("heading", name="New order")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Weekly restock of the warehouse on the north side")
    expect(page.get_by_label("Recurring")).to_be_checked()
    expect(page.get_by_label("Unit")).to_have_value("weeks")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.get_by_test_id("preview-list").locator("li")).to_have_count(5)
    page.get_by_label("Name").fill("Weekly restock, south side")
    page.get_by_role("button", name="Create order").click()

    expect(page.get_by_test_id("order-name")).to_have_text("Weekly restock, south side")
    copy = Order.objects.get(user__email=email, order_name="Weekly restock, south side")
    original = Order.objects.get(pk=ids["weekly"])
    assert (copy.repeat_interval, copy.repeat_unit, copy.max_executions, copy.time_zone) == (
        1,
        "weeks",
        10,
        "Europe/Berlin",
    )
    assert copy.pk != original.pk and copy.executions_count == 0


def test_a_forgotten_password_is_reset_by_the_mailed_link(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    email = "forgetful@example.com"
    sign_up(page, email)
    log_out(page)
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_test_id("reset-sent")).to_be_visible()

    # The console mail backend (the default) writes the mail to the web process's output.
    links = re.findall(r"http://[^\s]+/password-reset/[^/\s]+/[^/\s]+", stack.read_log("web"))
    assert links, stack.read_log("web")[-3000:]
    page.goto(links[-1])
    new_password = "a-brand-new-passphrase-77"
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password confirmation").fill(new_password)
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_test_id("reset-complete")).to_be_visible()

    page.get_by_role("link", name="Log in").last.click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid email or password")
    page.get_by_label("Password").fill(new_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("signed-in-email")).to_have_text(email)
