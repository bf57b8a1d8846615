"""What a browser keeps of a signed-in session, in a real Chromium with its back/forward cache on."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from orders import services
from tests.browser.conftest import NewPage
from tests.browser.test_order_pages_in_browser import log_out, sign_up
from tests.processes import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Runs in every new document before its own scripts: records each pageshow and whether the document
# came back from the back/forward cache (a restored document keeps its list and gets one more entry).
RECORD_PAGESHOW = "window.__shows = []; addEventListener('pageshow', (e) => window.__shows.push(e.persisted));"
SHOWN = "window.__shows && window.__shows.length > 0 && document.readyState === 'complete'"
# A page any browser may keep in its back/forward cache: no Cache-Control, no unload handler.
CACHEABLE_PAGE = b"<!doctype html><html lang='en'><title>probe</title><p>An ordinary page.</p></html>"


class _CacheablePage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(CACHEABLE_PAGE)))
        self.end_headers()
        self.wfile.write(CACHEABLE_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cacheable_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CacheablePage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _shows(page: Page) -> list[bool]:
    return list(page.evaluate("window.__shows"))


def test_the_browser_under_test_restores_an_ordinary_page_from_its_back_forward_cache(
    new_page: NewPage, stack: Stack, cacheable_url: str
) -> None:
    # Without this, the test below would pass in a browser that never restores anything from the cache.
    page = new_page()
    page.context.add_init_script(RECORD_PAGESHOW)
    page.goto(cacheable_url)
    page.goto("/login")
    page.go_back(wait_until="commit")
    page.wait_for_function("window.__shows && window.__shows.length === 2")
    assert _shows(page) == [False, True]


def test_back_after_logging_out_shows_the_login_page_not_the_users_orders(new_page: NewPage, stack: Stack) -> None:
    page = new_page()
    page.context.add_init_script(RECORD_PAGESHOW)
    email = "leaving@example.com"
    sign_up(page, email)
    services.order_create(
        user=User.objects.get(email=email),
        definition=services.OrderDefinition(
            order_name="Private cache order", schedule_time=datetime.now(UTC) + timedelta(days=1)
        ),
    )
    page.goto("/orders/")
    expect(page.get_by_text("Private cache order")).to_be_visible()
    log_out(page)

    page.go_back(wait_until="commit")
    # A document restored from the cache fires pageshow (persisted) but no load.
    page.wait_for_function(SHOWN)

    # A fresh request, which the server answers with the login page: nothing came from a cache.
    expect(page).to_have_url(re.compile(r"/login\?next=/orders/$"))
    assert _shows(page) == [False]
    expect(page.get_by_text("Private cache order")).to_have_count(0)
    expect(page.get_by_test_id("signed-in-email")).to_have_count(0)
    assert email not in page.content()

    # Forward again: the login page, still signed out.
    page.go_forward(wait_until="commit")
    page.wait_for_function(SHOWN)
    expect(page.get_by_text("Private cache order")).to_have_count(0)
    assert email not in page.content()
