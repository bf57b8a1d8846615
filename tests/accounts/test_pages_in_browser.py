"""The account pages in a real Chromium against the real web server, worker and scheduler processes.

Reuses the browser suite's module-scoped stack and browser (tests/browser/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, browser, playwright_driver, stack  # noqa: F401
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery-9"
NEW_PASSWORD = "new-password-for-zoe-1"


@pytest.fixture
def browser_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, stack: Stack, browser_errors: list[str]) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(base_url=stack.base_url, viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    tab = context.new_page()
    # A Content-Security-Policy violation (inline script or style) shows up as a console error.
    # Failed loads are recorded with their URL by the response hook instead.
    tab.on(
        "console",
        lambda m: (
            browser_errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("pageerror", lambda e: browser_errors.append(str(e)))
    # Chromium asks for /favicon.ico on its own; the app has none.
    tab.on(
        "response",
        lambda r: (
            browser_errors.append(f"{r.url}: HTTP {r.status}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    yield tab
    context.close()
    assert not browser_errors, browser_errors


def _log_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_sign_up_account_settings_password_change_and_log_out_everywhere(page: Page, stack: Stack) -> None:  # noqa: F811
    page.goto("/signup")
    page.get_by_label("Email").fill("bad")
    page.get_by_label("Password").fill("123")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("error-email")).to_be_visible()
    expect(page.get_by_test_id("error-password")).to_be_visible()

    page.get_by_label("Email").fill("zoe@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/orders/$"))
    expect(page.get_by_test_id("signed-in-email")).to_have_text("zoe@example.com")

    page.get_by_test_id("account-link").click()
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save time zone").click()
    expect(page.get_by_role("status")).to_contain_text("Time zone saved")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")

    page.get_by_label("Current password").fill("wrong-one-1")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_test_id("error-old_password")).to_be_visible()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Password changed")

    page.get_by_role("button", name="Log out everywhere").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))
    _log_in(page, "zoe@example.com", PASSWORD)
    expect(page.get_by_test_id("form-errors")).to_contain_text("Invalid email or password.")
    _log_in(page, "zoe@example.com", NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/account$"))

    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("link", name="Log in")).to_be_visible()


def test_the_login_page_locks_after_repeated_failures(
    page: Page,
    stack: Stack,  # noqa: F811
    django_user_model: Any,
    browser_errors: list[str],
) -> None:
    django_user_model.objects.create_user(email="yan@example.com", password=PASSWORD)
    page.goto("/login")
    # The web process reads the same environment as this one.
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _log_in(page, "yan@example.com", "wrong-password-1")
        expect(page.get_by_test_id("form-errors")).to_contain_text("Invalid email or password.")

    _log_in(page, "yan@example.com", PASSWORD)

    expect(page.get_by_test_id("form-errors")).to_contain_text("Too many attempts")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert browser_errors == [f"{stack.base_url}/login: HTTP 429"]
    browser_errors.clear()
