"""The pages: CSRF on every form, hostile text shown escaped, hostile form input a 400 with errors."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from orders.models import Notification, Order, OrderStatus
from tests.security.conftest import make_order

pytestmark = pytest.mark.django_db

HOSTILE_NAME = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>{{ 7*7 }}"
PASSWORD = "correct-horse-battery-9"


def _wall(minutes: int = 60) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S")


def _order_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "order_name": "from the page",
        "kind": "recurring",
        "schedule_time": _wall(),
        "time_zone": "UTC",
        "repeat_interval": "1",
        "repeat_unit": "days",
        "max_executions": "3",
        "misfire_policy": "run_once",
    }
    form.update(overrides)
    return form


def _csrf_client(user: Any) -> Client:
    user.refresh_from_db()  # a password change in an earlier request changes the session hash
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _token(client: Client, page: str = "/orders/") -> str:
    client.get(page)
    return str(client.cookies["csrftoken"].value)


def _form_posts(alice: Any) -> list[tuple[str, dict[str, Any]]]:
    order = make_order(alice)
    note = Notification.objects.create(user=alice, order=order, kind="completed", message="done")
    return [
        ("/orders/new", _order_form()),
        (f"/orders/{order.pk}/edit", _order_form(order_name="renamed")),
        (f"/orders/{order.pk}/pause", {}),
        (f"/orders/{order.pk}/resume", {}),
        (f"/orders/{order.pk}/run-now", {}),
        (f"/orders/{order.pk}/retry", {}),
        (f"/orders/{order.pk}/delete", {}),
        ("/notifications/read-all", {}),
        (f"/notifications/{note.pk}/read", {}),
        ("/account", {"time_zone": "Europe/Berlin"}),
        ("/account/password", {"old_password": PASSWORD, "new_password1": "n3w-horse-battery-staple"}),
        ("/account/logout-all", {}),
        ("/logout", {}),
    ]


def _state(alice: Any) -> tuple[Any, ...]:
    alice.refresh_from_db()
    orders = tuple(Order.objects.filter(user=alice).values_list("pk", "order_name", "status", "executions_count"))
    unread = Notification.objects.filter(user=alice, read_at__isnull=True).count()
    return orders, unread, alice.password, alice.time_zone, getattr(alice, "token_version", None)


def test_every_form_refuses_a_post_without_the_csrf_token(alice: Any) -> None:
    posts = _form_posts(alice)
    client = _csrf_client(alice)
    before = _state(alice)
    for path, data in posts:
        response = client.post(path, data)
        assert response.status_code == 403, (path, response.status_code)
        forged = client.post(path, {**data, "csrfmiddlewaretoken": "x" * 64})
        assert forged.status_code == 403, (path, forged.status_code)
    assert _state(alice) == before
    # Still signed in: the refused logout did nothing either.
    assert client.get("/orders/").status_code == 200


def test_the_same_forms_pass_with_the_token(alice: Any) -> None:
    # Guards the test above: the 403s come from CSRF, not from wrong URLs or data.
    for path, data in _form_posts(alice):
        client = _csrf_client(alice)
        response = client.post(path, {**data, "csrfmiddlewaretoken": _token(client)})
        assert response.status_code in (200, 302, 400), (path, response.status_code)


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_anonymous_forms_refuse_a_post_without_the_csrf_token(alice: Any, path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(path, {"email": "mallory@example.com", "password": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_every_post_form_on_every_page_carries_a_csrf_token(alice: Any) -> None:
    order = make_order(alice, is_recurring=True, repeat_interval=1, repeat_unit="days")
    Notification.objects.create(user=alice, order=order, kind="completed", message="done")
    client = Client()
    client.force_login(alice)
    pages = [
        "/orders/",
        "/orders/new",
        f"/orders/{order.pk}",
        f"/orders/{order.pk}/edit",
        f"/orders/{order.pk}/delete",
        "/notifications/",
        "/account",
    ]
    seen = 0
    for page in pages:
        html = client.get(page).content.decode()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S | re.I):
            if re.search(r'method="post"', form, flags=re.I):
                seen += 1
                assert 'name="csrfmiddlewaretoken"' in form, (page, form[:200])
    anonymous = Client()
    for page in ("/login", "/signup"):
        html = anonymous.get(page).content.decode()
        assert 'name="csrfmiddlewaretoken"' in html, page
    assert seen >= 10


def test_hostile_names_are_shown_escaped_on_every_page(alice: Any) -> None:
    order = make_order(alice, order_name=HOSTILE_NAME)
    Notification.objects.create(user=alice, order=order, kind="completed", message=f"Order {HOSTILE_NAME} done")
    client = Client()
    client.force_login(alice)
    for page in (
        "/orders/",
        "/orders/live",
        f"/orders/{order.pk}",
        f"/orders/{order.pk}/live",
        f"/orders/{order.pk}/edit",
        f"/orders/{order.pk}/delete",
        "/notifications/",
    ):
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert "<script>alert(" not in html, page
        assert "<img src=x" not in html, page
        if not page.endswith("/live"):  # the detail's live fragment shows status, not the name
            assert "&lt;script&gt;alert(" in html, page
            assert "{{ 7*7 }}" in html, page  # shown as typed, not evaluated
    assert Order.objects.get(pk=order.pk).order_name == HOSTILE_NAME


BAD_FORM_VALUES: list[tuple[str, str]] = [
    ("order_name", "x" * 10_000),
    ("order_name", "nul\x00inside"),
    ("order_name", "   "),
    ("schedule_time", "2024-13-45T25:61"),
    ("schedule_time", ""),
    ("schedule_time", "1767225600"),
    ("schedule_time", "2020-01-01T00:00:00"),
    ("schedule_time", "9999-12-31T23:59:59"),
    ("schedule_time", "0001-01-01T00:00:00"),
    ("repeat_interval", "0"),
    ("repeat_interval", "-5"),
    ("repeat_interval", "5.5"),
    ("repeat_interval", "five"),
    ("repeat_interval", "2000000000"),
    ("repeat_interval", "9" * 5000),
    ("max_executions", "0"),
    ("max_executions", "1000000000000"),
    ("repeat_unit", "fortnights"),
    ("repeat_unit", "MINUTES"),
    ("time_zone", "Mars/Olympus_Mons"),
    ("time_zone", "UTC\x00"),
    ("kind", "sometimes"),
    ("misfire_policy", "whenever"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FORM_VALUES, ids=[f"{f}={v[:20]!r}" for f, v in BAD_FORM_VALUES])
@pytest.mark.parametrize("zone", ["UTC", "Pacific/Pago_Pago"])
def test_the_order_form_answers_bad_values_with_a_400_and_field_errors(
    alice: Any, field: str, value: str, zone: str
) -> None:
    client = Client()
    client.force_login(alice)
    form = {**_order_form(time_zone=zone), field: value}
    response = client.post("/orders/new", form)
    assert response.status_code == 400, response.status_code
    html = response.content.decode()
    assert 'aria-invalid="true"' in html or "errorlist" in html
    assert not Order.objects.exists()
    preview = client.post("/orders/preview.json", form)
    assert preview.status_code == 200, preview.status_code
    assert preview["Content-Type"].startswith("application/json")


def test_the_order_form_ignores_server_owned_fields(alice: Any, bob: Any) -> None:
    bobs = make_order(bob)
    client = Client()
    client.force_login(alice)
    extra = {"user": bob.pk, "user_id": bob.pk, "order_id": bobs.pk, "id": bobs.pk, "status": "completed"}
    extra |= {"executions_count": "99", "job_id": "forged", "next_run_at": "2031-01-01T00:00:00"}
    response = client.post("/orders/new", {**_order_form(), **extra})
    assert response.status_code == 302
    order = Order.objects.exclude(pk=bobs.pk).get()
    assert order.user_id == alice.pk
    assert (order.status, order.executions_count) == (OrderStatus.SCHEDULED, 0)
    assert order.job_id != "forged"
    edited = client.post(f"/orders/{order.pk}/edit", {**_order_form(order_name="renamed"), **extra})
    assert edited.status_code == 302
    order.refresh_from_db()
    assert (order.user_id, order.order_name, order.status, order.executions_count) == (
        alice.pk,
        "renamed",
        OrderStatus.SCHEDULED,
        0,
    )
    bobs.refresh_from_db()
    assert bobs.user_id == bob.pk and bobs.order_name == "restock"


@pytest.mark.parametrize(
    "page",
    [
        "/orders/?page=abc",
        "/orders/?page=-1",
        "/orders/?page=99999999999999999999",
        "/orders/?status=bogus",
        "/orders/?search=%00",
        "/notifications/?page=%C2%B2",
    ],
)
def test_page_query_parameters_never_crash(alice: Any, page: str) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get(page).status_code in (200, 400, 404)


PAGE_GETS = ["/orders/{id}", "/orders/{id}/", "/orders/{id}/edit", "/orders/{id}/live", "/orders/{id}/delete"]
PAGE_POSTS = ["/orders/{id}/edit", "/orders/{id}/delete", "/orders/{id}/pause", "/orders/{id}/resume"]
PAGE_POSTS += ["/orders/{id}/preview.json"]
PAGE_POSTS += ["/orders/{id}/run-now", "/orders/{id}/retry", "/notifications/{id}/read"]


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1e100", "99999999999", "9" * 40, "%C2%B2", "%00", "1.0"])
def test_impossible_ids_on_every_page_are_404(alice: Any, raw: str) -> None:
    client = Client()
    client.force_login(alice)
    for path in PAGE_GETS:
        assert client.get(path.format(id=raw)).status_code == 404, path
    for path in PAGE_POSTS:
        assert client.post(path.format(id=raw), _order_form()).status_code == 404, path


def test_another_users_notification_page_action_is_404(alice: Any, bob: Any) -> None:
    note = Notification.objects.create(user=bob, kind="completed", message="bob-only-news")
    client = Client()
    client.force_login(alice)
    assert client.post(f"/notifications/{note.pk}/read").status_code == 404
    note.refresh_from_db()
    assert note.read_at is None
    assert "bob-only-news" not in client.get("/notifications/").content.decode()
