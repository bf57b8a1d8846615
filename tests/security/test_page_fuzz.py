"""Random query strings and form posts against every page: whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import Notification
from tests.security.conftest import make_order

pytestmark = pytest.mark.django_db

FIELDS = [
    "page", "status", "kind", "type", "q", "search", "ordering", "sort", "is_recurring", "next",
    "order_name", "schedule_time", "time_zone", "repeat_interval", "repeat_unit", "unlimited",
    "max_executions", "misfire_policy", "count", "overlap_policy", "pause_after_failures",
]  # fmt: skip
# Any text a browser can send (no lone surrogates, which cannot be encoded), plus the nasty classics.
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["", "0", "-1", "1e100", "9" * 30, "\x00", "²", "NaN", "true", "9999-12-31T23:59:59", "Etc/GMT+12", "../.."]
)
QUERIES = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), TEXT | st.lists(TEXT, max_size=3), max_size=6)
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def web(alice: Any) -> tuple[Client, dict[str, int]]:
    order = make_order(alice, is_recurring=True, repeat_interval=1, repeat_unit="days")
    note = Notification.objects.create(user=alice, order=order, kind="completed", message="done")
    client = Client()
    client.force_login(alice)
    return client, {"order": order.pk, "note": note.pk}


GET_PAGES = [
    "/orders/", "/orders/live", "/orders/new", "/orders/{order}", "/orders/{order}/live",
    "/orders/{order}/edit", "/orders/{order}/delete", "/notifications/", "/account",
]  # fmt: skip


@pytest.mark.parametrize("path", GET_PAGES)
@FUZZ
@given(query=QUERIES)
def test_random_query_strings_never_crash_a_page(web: tuple[Client, dict[str, int]], path: str, query: Any) -> None:
    client, ids = web
    response = client.get(path.format(**ids), query)
    assert response.status_code < 500, (path, query, response.status_code)


@pytest.mark.parametrize(
    "path", ["/orders/new", "/orders/{order}/edit", "/orders/preview.json", "/orders/{order}/preview.json", "/account"]
)
@FUZZ
@given(form=QUERIES)
def test_random_form_posts_never_crash_a_page(web: tuple[Client, dict[str, int]], path: str, form: Any) -> None:
    client, ids = web
    response = client.post(path.format(**ids), form)
    assert response.status_code < 500, (path, form, response.status_code)
