"""Every page satisfies its Content-Security-Policy in a real Chromium: no violation is reported while
the pages load, update themselves and run their scripts (live refresh, run-time preview)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from orders.models import Notification
from tests.conftest import make_user
from tests.processes import Stack, running_stack
from tests.security.conftest import make_order

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "a-long-csp-passphrase-42"
# Runs before any page script; the listener reports what the browser itself blocked.
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
});
"""


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("csp-stack"), workers=0, scheduler=False) as live:
        live.wait_http("/login")
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    # Playwright's sync API runs an event loop in this thread; the ORM would refuse to work beside it.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as driver:
            chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watched:
    """A page whose CSP violations and console messages about them are collected."""

    def __init__(self, browser: Browser, stack: Stack) -> None:
        self.context = browser.new_context(base_url=stack.base_url)
        self.context.set_default_timeout(10_000)
        self.context.add_init_script(COLLECT_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", self._on_console)

    def _on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(f"{self.page.url}: {message.text}")

    def violations(self) -> list[str]:
        return [f"{self.page.url}: {v}" for v in self.page.evaluate("window.__csp || []")]

    def visit(self, path: str) -> list[str]:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        self.page.wait_for_load_state("networkidle")
        return self.violations()


def _log_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/orders/")


def test_the_policy_is_enforced_and_observed(browser: Browser, stack: Stack) -> None:
    # Proves the detector works: an injected inline script must be refused and reported.
    watched = Watched(browser, stack)
    watched.visit("/login")
    watched.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.appendChild(s); }"
    )
    watched.page.wait_for_timeout(300)
    assert watched.page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in watched.violations()), watched.violations()
    assert watched.console, "Chromium reported nothing on the console"
    watched.context.close()


def test_no_page_violates_the_policy(browser: Browser, stack: Stack) -> None:
    user = make_user("csp@example.com", password=PASSWORD)
    order = make_order(user, order_name="<b>bold?</b>", is_recurring=True, repeat_interval=1, repeat_unit="days")
    Notification.objects.create(user=user, order=order, kind="completed", message="done")
    watched = Watched(browser, stack)
    found: list[str] = []
    found += watched.visit("/signup")
    found += watched.visit("/login")
    _log_in(watched.page, user.email)
    for path in (
        "/orders/",
        f"/orders/{order.pk}",
        f"/orders/{order.pk}/edit",
        f"/orders/{order.pk}/delete",
        "/notifications/",
        "/account",
    ):
        found += watched.visit(path)
    # The form's scripts: switching the kind and typing fetch a preview of the run times.
    found += watched.visit("/orders/new")
    watched.page.get_by_label("Name").fill("typed in the browser")
    watched.page.get_by_label("Recurring").check()
    watched.page.get_by_label("Every").fill("2")
    watched.page.wait_for_load_state("networkidle")
    # The dashboard and the detail refresh themselves every few seconds.
    watched.visit(f"/orders/{order.pk}")
    watched.page.wait_for_timeout(3_000)
    found += watched.violations()
    watched.context.close()
    assert not found, "\n".join(found)
    assert not watched.console, "\n".join(watched.console)


def test_the_api_docs_render_from_the_app_within_the_policy(browser: Browser, stack: Stack) -> None:
    watched = Watched(browser, stack)
    requested: list[str] = []
    watched.page.on("request", lambda request: requested.append(request.url))
    found = watched.visit("/api/docs/")
    # Swagger UI drew the schema: its assets were served by the app and its script ran.
    watched.page.get_by_text("Order Scheduler API").first.wait_for()
    watched.page.locator(".opblock").first.wait_for()
    found += watched.violations()
    watched.context.close()
    assert not found, "\n".join(found)
    assert not watched.console, "\n".join(watched.console)
    assert all(url.startswith(stack.base_url) for url in requested), [u for u in requested if stack.base_url not in u]
