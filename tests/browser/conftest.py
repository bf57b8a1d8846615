"""Browser suite: Playwright drives Debian's Chromium against the real web server (scripts/web), rqworker, rqscheduler
processes that share the test database and Redis.

One stack and one browser serve the whole module (starting them is most of the cost); every test
gets fresh browser contexts, i.e. fresh cookies, and its own users.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Response, sync_playwright

from tests.processes import ROOT, Stack, running_stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
# The README's screenshots are refreshed on request (`make screenshots`); ordinary runs write theirs
# to test-artifacts/ so that running the suite does not modify tracked files.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else ROOT / "test-artifacts" / "screenshots"
)
# Playwright launches Chromium with --disable-back-forward-cache; real Chrome has the cache on, and a
# page restored from it after logout is exactly what tests/browser/test_private_pages_in_browser.py
# must see fail. So the suite runs with it on (a Back restored from it fires no "load": wait for "commit").
IGNORED_DEFAULT_ARGS = ["--disable-back-forward-cache"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Keep each phase's report on the test item so fixtures can tell, at teardown, that it failed.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Orders whose name contains "poison" fail (the others succeed), with one quick automatic retry,
    # so that failures, retries and their display can be watched in a few seconds.
    with running_stack(
        tmp_path_factory.mktemp("browser-stack"),
        ORDER_EXECUTOR="tests.faults.executors.fail_when_named_poison",
        ORDER_MAX_ATTEMPTS=2,
        ORDER_RETRY_BASE_DELAY_SECONDS=0.5,
    ) as live:
        live.wait_http("/login")
        yield live


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    # Playwright's sync API runs an event loop in this thread; Django would then refuse the ORM calls
    # the tests make to check the database. Allowed only while the browser is up.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as driver:
            yield driver
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)")
    chromium = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, ignore_default_args=IGNORED_DEFAULT_ARGS
    )
    yield chromium
    chromium.close()


NewPage = Callable[..., Page]


def _record_console(errors: list[str], page: Page, message: ConsoleMessage) -> None:
    # A failed load is reported by _record_failed_response with its URL (the console text has none).
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(f"{page.url}: {message.text}")


def _record_failed_response(errors: list[str], response: Response) -> None:
    # Pages may answer 4xx on purpose (an invalid form, another user's order); a
    # stylesheet or script that does not load is a defect. Chromium asks for /favicon.ico on its own.
    if response.request.resource_type not in ("script", "stylesheet", "image", "font"):
        return
    if response.status >= 400 and not response.url.endswith("/favicon.ico"):
        errors.append(f"{response.url}: HTTP {response.status}")


@pytest.fixture
def new_page(request: pytest.FixtureRequest, browser: Browser, stack: Stack) -> Iterator[NewPage]:
    """new_page(viewport=..., **context_options) opens a page in a fresh context (its own cookies: one per user).

    Console errors and uncaught script errors fail the test (a Content-Security-Policy violation,
    e.g. an inline script or style, shows up there), unless the page is opened with
    console_errors_expected=True (pages that deliberately load a 404).
    If the test fails, every page it opened is saved to test-artifacts/<test>-<n>.png.
    """
    contexts: list[BrowserContext] = []
    pages: list[Page] = []
    console_errors: list[str] = []

    def open_page(
        viewport: dict[str, int] | None = None, console_errors_expected: bool = False, **context_options: Any
    ) -> Page:
        # context_options: anything else browser.new_context takes (timezone_id, color_scheme, ...).
        context = browser.new_context(
            base_url=stack.base_url,
            viewport=viewport or DESKTOP,  # type: ignore[arg-type]
            **context_options,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        if not console_errors_expected:
            page.on("console", lambda message: _record_console(console_errors, page, message))
            page.on("pageerror", lambda error: console_errors.append(f"{page.url}: {error}"))
            page.on("response", lambda response: _record_failed_response(console_errors, response))
        return page

    yield open_page

    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for n, page in enumerate(pages, start=1):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"could not save a screenshot of page {n}: {exc}")
        for log in ("web", "worker1", "scheduler"):
            (ARTIFACTS / f"{name}-{log}.log").write_text(stack.read_log(log)[-20_000:])
    for context in contexts:
        context.close()
    if report is not None and report.passed:
        assert not console_errors, "errors in the browser console:\n" + "\n".join(console_errors)
