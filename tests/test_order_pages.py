"""The server-rendered order pages, through Django's test client against the real database and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from orders import services
from orders.models import Execution, ExecutionStatus, Notification, Order, OrderStatus
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db


def _client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_web(alice: Any) -> Client:
    return _client_for(alice)


@pytest.fixture
def bob_web(bob: Any) -> Client:
    return _client_for(bob)


def _wall(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M:%S")


def _form(**overrides: Any) -> dict[str, Any]:
    data = {
        "order_name": "Buy 10 AAPL",
        "kind": "once",
        "schedule_time": _wall(timezone.now() + timedelta(hours=2), "Europe/Berlin"),
        "time_zone": "Europe/Berlin",
        "repeat_interval": "",
        "repeat_unit": "days",
        "max_executions": "",
        "misfire_policy": "run_once",
    }
    data.update(overrides)
    return data


def _one_time(user: Any, name: str = "once", hours: float = 2) -> Order:
    return services.order_create(
        user=user,
        definition=services.OrderDefinition(order_name=name, schedule_time=timezone.now() + timedelta(hours=hours)),
    )


def _recurring(user: Any, name: str = "every hour", max_executions: int | None = 3, **extra: Any) -> Order:
    return services.order_create(
        user=user,
        definition=services.OrderDefinition(
            order_name=name,
            schedule_time=extra.pop("schedule_time", timezone.now() + timedelta(minutes=30)),
            is_recurring=True,
            repeat_interval=extra.pop("repeat_interval", 1),
            repeat_unit=extra.pop("repeat_unit", "hours"),
            max_executions=max_executions,
            **extra,
        ),
    )


# --- access ------------------------------------------------------------------------------------------


def test_every_signed_in_page_and_api_answer_is_marked_no_store(alice: Any, alice_web: Client) -> None:
    order = _one_time(alice)
    pages = [
        "/orders/",
        "/orders/live",
        "/orders/new",
        f"/orders/{order.pk}",
        f"/orders/{order.pk}/live",
        f"/orders/{order.pk}/edit",
        f"/orders/{order.pk}/delete",
        "/notifications/",
        "/account",
    ]
    for path in pages:
        response = alice_web.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"], path
    # A redirect after an action carries the same data (its flash message), and so does the preview.
    redirect = alice_web.post(f"/orders/{order.pk}/pause")
    assert redirect.status_code == 302 and "no-store" in redirect["Cache-Control"]
    preview = alice_web.post("/orders/preview.json", _form())
    assert preview.status_code == 200 and "no-store" in preview["Cache-Control"]

    api = api_client_for(alice)
    for path in ("/api/orders", f"/api/orders/{order.pk}", f"/api/orders/{order.pk}/executions", "/api/auth/me"):
        answer = api.get(path)
        assert answer.status_code == 200, path
        assert "no-store" in answer["Cache-Control"], path
    # Tokens too (RFC 6749 5.1), though the request itself is anonymous.
    login = Client().post(
        "/api/auth/login",
        {"email": alice.email, "password": "correct-horse-battery-9"},
        content_type="application/json",
    )
    assert login.status_code == 200 and "no-store" in login["Cache-Control"]


def test_logging_out_answers_no_store_and_back_then_finds_the_login_page(alice: Any, alice_web: Client) -> None:
    _one_time(alice, name="secret order")
    assert "secret order" in alice_web.get("/orders/").content.decode()

    response = alice_web.post("/logout")

    assert response.status_code == 302 and "no-store" in response["Cache-Control"]
    # What Back re-requests (the page is not in any cache): the login page, without the order.
    again = alice_web.get("/orders/")
    assert again.status_code == 302 and again["Location"].startswith("/login")


@pytest.mark.parametrize("path", ["/orders/", "/orders/new", "/notifications/", "/orders/live"])
def test_pages_redirect_anonymous_visitors_to_login_with_next(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


def test_every_page_and_action_on_another_users_order_is_404(alice: Any, bob_web: Client) -> None:
    order = _recurring(alice)
    base = f"/orders/{order.pk}"
    for path in (base, f"{base}/", f"{base}/edit", f"{base}/live", f"{base}/delete"):
        assert bob_web.get(path).status_code == 404, path
    for action in ("pause", "resume", "run-now", "retry", "delete", "edit", "preview.json"):
        assert bob_web.post(f"{base}/{action}", _form()).status_code == 404, action
    order.refresh_from_db()
    assert order.status == OrderStatus.SCHEDULED
    assert order.order_name == "every hour"


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "99999999999999999999999", "1.5"])
def test_a_malformed_order_id_is_404_not_500(alice_web: Client, raw: str) -> None:
    assert alice_web.get(f"/orders/{raw}").status_code == 404
    assert alice_web.post(f"/orders/{raw}/pause").status_code == 404


def test_actions_refuse_get(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice)
    assert alice_web.get(f"/orders/{order.pk}/pause").status_code == 405
    order.refresh_from_db()
    assert order.status == OrderStatus.SCHEDULED


# --- dashboard ---------------------------------------------------------------------------------------------


def test_dashboard_lists_only_my_orders_with_status_type_and_count(alice: Any, bob: Any, alice_web: Client) -> None:
    _one_time(alice, "alice once")
    _recurring(alice, "alice hourly", max_executions=4, repeat_interval=2)
    _one_time(bob, "bob secret")
    html = alice_web.get("/orders/").content.decode()
    assert "alice once" in html and "alice hourly" in html
    assert "bob secret" not in html
    assert "Every 2 hours" in html and "One-time" in html
    assert "0 / 4" in html and 'max="4"' in html
    assert "Scheduled" in html


def test_dashboard_shows_next_run_in_the_users_time_zone_with_the_zone_named(alice: Any) -> None:
    alice.time_zone = "America/New_York"
    alice.save(update_fields=["time_zone"])
    at = datetime(2031, 7, 1, 16, 0, tzinfo=UTC)
    services.order_create(
        user=alice, definition=services.OrderDefinition(order_name="summer", schedule_time=at, time_zone="UTC")
    )
    html = _client_for(alice).get("/orders/").content.decode()
    assert "2031-07-01 12:00:00 EDT" in html
    assert "America/New_York" in html


def test_dashboard_filters_by_status_type_and_name(alice: Any, alice_web: Client) -> None:
    _one_time(alice, "apples once")
    paused = _recurring(alice, "apples hourly")
    services.order_pause(order=paused)
    _recurring(alice, "pears hourly")

    def names(query: str) -> set[str]:
        return {o.order_name for o in alice_web.get(f"/orders/?{query}").context["orders"]}

    assert names("status=paused") == {"apples hourly"}
    assert names("type=once") == {"apples once"}
    assert names("type=recurring&q=APPLES") == {"apples hourly"}
    # Unknown filter values are ignored rather than an error page.
    assert names("status=bogus") == {"apples once", "apples hourly", "pears hourly"}


def test_dashboard_sorts_by_each_column_both_ways_with_aria_sort(alice: Any, alice_web: Client) -> None:
    late = _one_time(alice, name="b late", hours=5)
    early = _one_time(alice, name="c early", hours=1)
    done = _recurring(alice, name="a done", max_executions=2)
    Order.objects.filter(pk=done.pk).update(status=OrderStatus.COMPLETED, next_run_at=None, executions_count=2)

    def ids(sort: str) -> list[int]:
        response = alice_web.get("/orders/", {"sort": sort})
        assert response.status_code == 200
        return [order.pk for order in response.context["orders"]]

    assert ids("name") == [done.pk, late.pk, early.pk]
    assert ids("-name") == [early.pk, late.pk, done.pk]
    # Nothing ahead sorts last, whichever way.
    assert ids("next_run") == [early.pk, late.pk, done.pk]
    assert ids("-next_run") == [late.pk, early.pk, done.pk]
    assert ids("executions")[-1] == done.pk and ids("-executions")[0] == done.pk
    assert ids("status")[0] == done.pk  # completed < scheduled
    assert ids("nonsense") == ids("")

    html = alice_web.get("/orders/", {"sort": "name", "status": "scheduled"}).content.decode()
    assert '<th scope="col" aria-sort="ascending"><a class="sort" href="?sort=-name&amp;status=scheduled"' in html
    assert 'href="?sort=next_run&amp;status=scheduled"' in html
    # The filters keep the sort.
    assert '<input type="hidden" name="sort" value="name">' in html


def test_duplicate_opens_the_create_form_prefilled_with_the_orders_definition(alice: Any, alice_web: Client) -> None:
    source = _recurring(alice, name="weekly restock", max_executions=7, repeat_unit="weeks", time_zone="Asia/Tokyo")
    detail = alice_web.get(f"/orders/{source.pk}").content.decode()
    assert f'href="/orders/new?from={source.pk}">Duplicate</a>' in detail

    response = alice_web.get("/orders/new", {"from": source.pk})

    assert response.status_code == 200
    initial = response.context["form"].initial
    assert initial["order_name"] == "weekly restock" and initial["kind"] == "recurring"
    assert (initial["repeat_interval"], initial["repeat_unit"], initial["max_executions"]) == (1, "weeks", 7)
    assert initial["time_zone"] == "Asia/Tokyo"
    assert initial["schedule_time"] == _wall(source.schedule_time, "Asia/Tokyo")
    html = response.content.decode()
    assert 'value="weekly restock"' in html and "Create order" in html

    # Sending it makes a second, independent order.
    form = {**{k: ("" if v is None else v) for k, v in initial.items()}, "unlimited": ""}
    created = alice_web.post("/orders/new", {**form, "idempotency_key": "b" * 32})
    assert created.status_code == 302
    assert Order.objects.filter(user=alice, order_name="weekly restock").count() == 2


def test_duplicating_an_order_whose_time_has_passed_starts_at_its_next_run_or_the_next_hour(
    alice: Any, alice_web: Client
) -> None:
    recurring = _recurring(alice, name="grid")
    past = timezone.now() - timedelta(days=2)
    Order.objects.filter(pk=recurring.pk).update(schedule_time=past)
    recurring.refresh_from_db()
    assert recurring.next_run_at is not None
    initial = alice_web.get("/orders/new", {"from": recurring.pk}).context["form"].initial
    assert initial["schedule_time"] == _wall(recurring.next_run_at, "UTC")

    once = _one_time(alice, name="ran")
    Order.objects.filter(pk=once.pk).update(schedule_time=past, next_run_at=None, status=OrderStatus.COMPLETED)
    start = datetime.strptime(
        alice_web.get("/orders/new", {"from": once.pk}).context["form"].initial["schedule_time"], "%Y-%m-%dT%H:%M:%S"
    )
    assert start.replace(tzinfo=UTC) > timezone.now()


def test_nobody_duplicates_another_users_order(alice: Any, bob_web: Client) -> None:
    assert bob_web.get("/orders/new", {"from": _one_time(alice).pk}).status_code == 404


def test_dashboard_is_paginated(alice: Any, alice_web: Client) -> None:
    for n in range(23):
        _one_time(alice, f"order {n:02d}", hours=1 + n)
    first = alice_web.get("/orders/?type=once")
    assert len(first.context["orders"]) == 20
    assert "page=2" in first.content.decode() and "type=once" in first.content.decode()
    second = alice_web.get("/orders/?type=once&page=2")
    assert len(second.context["orders"]) == 3


def test_dashboard_live_fragment_reflects_a_status_change_without_the_page(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice, "live one")
    assert "Scheduled" in alice_web.get("/orders/live").content.decode()
    services.order_pause(order=order)
    fragment = alice_web.get("/orders/live").content.decode()
    assert "Paused" in fragment
    assert "<html" not in fragment


# --- create / edit / convert ----------------------------------------------------------------------------------


def test_create_one_time_order_reads_the_wall_time_in_the_chosen_zone(alice: Any, alice_web: Client) -> None:
    wall = (timezone.now() + timedelta(days=3)).astimezone(ZoneInfo("Asia/Tokyo")).replace(microsecond=0)
    response = alice_web.post(
        "/orders/new", _form(schedule_time=wall.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="Asia/Tokyo")
    )
    order = Order.objects.get(user=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.pk}"
    assert order.schedule_time == wall.astimezone(UTC)
    assert order.time_zone == "Asia/Tokyo"
    assert not order.is_recurring and order.status == OrderStatus.SCHEDULED


def test_new_order_form_defaults_to_the_users_time_zone(alice: Any) -> None:
    alice.time_zone = "Europe/Lisbon"
    alice.save(update_fields=["time_zone"])
    form = _client_for(alice).get("/orders/new").context["form"]
    assert form["time_zone"].value() == "Europe/Lisbon"


def test_create_recurring_order_from_the_form(alice: Any, alice_web: Client) -> None:
    response = alice_web.post(
        "/orders/new",
        _form(kind="recurring", repeat_interval="15", repeat_unit="minutes", max_executions="4"),
    )
    assert response.status_code == 302
    order = Order.objects.get(user=alice)
    assert (order.is_recurring, order.repeat_interval, order.repeat_unit, order.max_executions) == (
        True,
        15,
        "minutes",
        4,
    )


def test_unlimited_recurring_order_has_no_maximum(alice: Any, alice_web: Client) -> None:
    alice_web.post("/orders/new", _form(kind="recurring", repeat_interval="1", unlimited="on", max_executions="9"))
    assert Order.objects.get(user=alice).max_executions is None


def test_a_past_time_is_refused_beside_the_field_with_400(alice: Any, alice_web: Client) -> None:
    past = _wall(timezone.now() - timedelta(hours=1), "Europe/Berlin")
    response = alice_web.post("/orders/new", _form(schedule_time=past))
    assert response.status_code == 400
    assert response.context["form"].errors["schedule_time"] == ["The time must be in the future."]
    html = response.content.decode()
    assert 'id="id_schedule_time_error"' in html and 'aria-invalid="true"' in html
    assert not Order.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "recurring", "repeat_interval": "", "max_executions": "3"}, "repeat_interval"),
        ({"kind": "recurring", "repeat_interval": "2", "max_executions": ""}, "max_executions"),
        ({"kind": "recurring", "repeat_interval": "0", "max_executions": "3"}, "repeat_interval"),
        ({"kind": "recurring", "repeat_interval": "1", "repeat_unit": "fortnights"}, "repeat_unit"),
        ({"schedule_time": "tomorrow at noon"}, "schedule_time"),
        ({"schedule_time": "99999-01-01T00:00"}, "schedule_time"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"order_name": "   "}, "order_name"),
        ({"order_name": "x" * 256}, "order_name"),
        ({"misfire_policy": "sometimes"}, "misfire_policy"),
    ],
)
def test_bad_input_is_a_400_with_the_error_beside_the_field(
    alice_web: Client, overrides: dict[str, str], field: str
) -> None:
    response = alice_web.post("/orders/new", _form(**overrides))
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert f'id="id_{field}_error"' in response.content.decode()


def test_a_past_time_is_shown_together_with_the_forms_other_errors(alice: Any, alice_web: Client) -> None:
    past = _wall(timezone.now() - timedelta(hours=1), "UTC")
    response = alice_web.post(
        "/orders/new",
        _form(order_name="", schedule_time=past, time_zone="UTC", kind="recurring", repeat_interval="x"),
    )

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) >= {"order_name", "schedule_time", "repeat_interval", "max_executions"}, errors
    assert errors["schedule_time"] == ["The time must be in the future."]
    html = response.content.decode()
    assert 'data-testid="error-schedule_time"' in html and 'data-testid="error-order_name"' in html
    assert not Order.objects.exists()


def test_the_active_order_cap_is_shown_above_the_form(alice: Any, alice_web: Client, settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 1
    _one_time(alice)
    response = alice_web.post("/orders/new", _form())
    assert response.status_code == 400
    assert "at most 1 active orders" in response.content.decode()


def test_edit_form_shows_the_definition_in_the_orders_zone(alice: Any, alice_web: Client) -> None:
    at = datetime(2031, 1, 15, 8, 30, tzinfo=UTC)
    order = services.order_create(
        user=alice,
        definition=services.OrderDefinition(order_name="winter", schedule_time=at, time_zone="Europe/Berlin"),
    )
    form = alice_web.get(f"/orders/{order.pk}/edit").context["form"]
    assert form["schedule_time"].value() == "2031-01-15T09:30:00"
    assert form["time_zone"].value() == "Europe/Berlin"
    assert form["kind"].value() == "once"


def test_editing_a_running_recurring_order_keeps_its_past_anchor(alice: Any, alice_web: Client) -> None:
    anchor = (timezone.now() - timedelta(hours=5)).replace(second=0, microsecond=123456)
    order = _recurring(alice, "old anchor", max_executions=10)
    Order.objects.filter(pk=order.pk).update(schedule_time=anchor)
    order.refresh_from_db()
    shown = alice_web.get(f"/orders/{order.pk}/edit").context["form"].initial["schedule_time"]
    assert shown.endswith(":00")
    response = alice_web.post(
        f"/orders/{order.pk}/edit",
        _form(
            order_name="renamed",
            kind="recurring",
            # What a browser sends back for 09:30:00 in a datetime-local input.
            schedule_time=shown[:16],
            time_zone=order.time_zone,
            repeat_interval="2",
            repeat_unit="hours",
            max_executions="10",
        ),
    )
    assert response.status_code == 302, response.context["form"].errors
    order.refresh_from_db()
    assert order.order_name == "renamed" and order.repeat_interval == 2
    assert order.schedule_time == anchor
    assert order.next_run_at is not None and order.next_run_at > timezone.now()


def test_converting_one_time_to_recurring_and_back(alice: Any, alice_web: Client) -> None:
    order = _one_time(alice, "convert me")
    initial = alice_web.get(f"/orders/{order.pk}/edit").context["form"].initial
    response = alice_web.post(
        f"/orders/{order.pk}/edit",
        _form(
            order_name="convert me",
            kind="recurring",
            schedule_time=initial["schedule_time"],
            time_zone=initial["time_zone"],
            repeat_interval="1",
            repeat_unit="days",
            max_executions="5",
        ),
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.is_recurring and order.max_executions == 5 and order.repeat_unit == "days"

    later = _wall(timezone.now() + timedelta(days=2), "UTC")
    response = alice_web.post(
        f"/orders/{order.pk}/edit", _form(order_name="convert me", kind="once", schedule_time=later, time_zone="UTC")
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert not order.is_recurring
    assert order.repeat_interval is None and order.max_executions is None
    assert order.next_run_at == datetime.strptime(later, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def test_lowering_the_maximum_below_the_runs_so_far_is_refused_beside_the_field(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice, max_executions=5)
    Order.objects.filter(pk=order.pk).update(executions_count=3)
    initial = alice_web.get(f"/orders/{order.pk}/edit").context["form"].initial
    response = alice_web.post(
        f"/orders/{order.pk}/edit",
        _form(
            kind="recurring",
            schedule_time=initial["schedule_time"],
            time_zone=initial["time_zone"],
            repeat_interval="1",
            repeat_unit="hours",
            max_executions="2",
        ),
    )
    assert response.status_code == 400
    assert "already run 3 times" in response.context["form"].errors["max_executions"][0]


# --- preview -------------------------------------------------------------------------------------------------


def test_preview_lists_the_next_five_runs_in_the_chosen_zone_without_saving(alice_web: Client) -> None:
    query = {
        "kind": "recurring",
        "schedule_time": "2031-03-29T01:30:00",
        "time_zone": "Europe/Berlin",
        "repeat_interval": "1",
        "repeat_unit": "days",
        "max_executions": "10",
    }
    response = alice_web.post("/orders/preview.json", query)
    assert response.status_code == 200
    body = response.json()
    assert body["time_zone"] == "Europe/Berlin"
    # The clocks go forward on 2031-03-30: the wall time is kept and the abbreviation changes.
    assert body["runs"] == [
        "2031-03-29 01:30:00 CET",
        "2031-03-30 01:30:00 CET",
        "2031-03-31 01:30:00 CEST",
        "2031-04-01 01:30:00 CEST",
        "2031-04-02 01:30:00 CEST",
    ]
    assert not Order.objects.exists()


def test_preview_stops_at_the_maximum_and_reports_field_errors(alice_web: Client) -> None:
    query = {
        "kind": "recurring",
        "schedule_time": "2031-01-01T00:00",
        "time_zone": "UTC",
        "repeat_interval": "2",
        "repeat_unit": "weeks",
        "max_executions": "2",
    }
    assert alice_web.post("/orders/preview.json", query).json()["runs"] == [
        "2031-01-01 00:00:00 UTC",
        "2031-01-15 00:00:00 UTC",
    ]
    # A field being typed is not a failed request: 200, with what keeps the preview from showing.
    bad = alice_web.post("/orders/preview.json", {**query, "repeat_interval": "x"})
    assert bad.status_code == 200
    assert bad.json()["runs"] == [] and "repeat_interval" in bad.json()["errors"]


def test_preview_of_a_half_filled_form_is_200_with_the_missing_fields(alice_web: Client) -> None:
    response = alice_web.post("/orders/preview.json", {"order_name": "half", "kind": "recurring"})

    assert response.status_code == 200
    body = response.json()
    assert body["runs"] == []
    assert {"schedule_time", "time_zone"} <= set(body["errors"])


def test_preview_is_a_post_and_takes_a_name_too_long_for_a_query_string(alice_web: Client) -> None:
    form = {**_form(order_name="n" * 20_000, time_zone="UTC"), "schedule_time": "2031-01-01T00:00"}
    assert alice_web.get("/orders/preview.json", form).status_code == 405

    response = alice_web.post("/orders/preview.json", form)

    assert response.status_code == 200
    assert response.json() == {
        "time_zone": "UTC",
        "description": "Once, on 2031-01-01 at 00:00 (UTC)",
        "runs": ["2031-01-01 00:00:00 UTC"],
        "errors": {},
    }


def test_preview_never_lists_a_past_time(alice: Any, alice_web: Client) -> None:
    past = _wall(timezone.now() - timedelta(hours=3), "UTC")
    once = alice_web.post("/orders/preview.json", _form(schedule_time=past, time_zone="UTC")).json()
    assert once["runs"] == [] and once["errors"] == {"schedule_time": ["This time has passed: choose one ahead."]}

    # A recurring order anchored in the past: only the occurrences still ahead.
    now = timezone.now()
    recurring = alice_web.post(
        "/orders/preview.json",
        _form(
            kind="recurring",
            schedule_time=past,
            time_zone="UTC",
            repeat_interval="1",
            repeat_unit="hours",
            max_executions="10",
        ),
    ).json()
    runs = [datetime.strptime(run, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC) for run in recurring["runs"]]
    assert len(runs) == 5 and all(run > now for run in runs), recurring

    # An edit form of a one-time order that already ran: no runs ahead, and no error for a time left as it was.
    done = _one_time(alice, name="done")
    Order.objects.filter(pk=done.pk).update(schedule_time=now - timedelta(days=1), status=OrderStatus.COMPLETED)
    initial = alice_web.get(f"/orders/{done.pk}/edit").context["form"].initial
    form = {name: "" if value is None else value for name, value in initial.items()}
    untouched = alice_web.post(f"/orders/{done.pk}/preview.json", {**form, "kind": "once"}).json()
    assert {**untouched, "description": ""} == {"time_zone": "UTC", "description": "", "runs": [], "errors": {}}
    assert untouched["description"].startswith("Once, on ")


def test_preview_of_an_edit_counts_the_runs_already_made(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice, max_executions=4)
    Order.objects.filter(pk=order.pk).update(executions_count=3)
    initial = alice_web.get(f"/orders/{order.pk}/edit").context["form"].initial
    query = {**initial, "kind": "recurring", "max_executions": "4", "unlimited": ""}
    runs = alice_web.post(f"/orders/{order.pk}/preview.json", query).json()["runs"]
    assert len(runs) == 1


# --- detail and actions -------------------------------------------------------------------------------------------


def test_detail_shows_definition_history_and_upcoming_runs(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice, "detailed", max_executions=3)
    Execution.objects.create(
        order=order,
        occurrence=1,
        scheduled_for=timezone.now(),
        started_at=timezone.now(),
        finished_at=timezone.now(),
        status=ExecutionStatus.FAILED,
        attempts=3,
        error="exchange closed",
    )
    response = alice_web.get(f"/orders/{order.pk}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "exchange closed" in html and "Failed" in html
    assert len(response.context["upcoming"]) == 3
    assert "Retry last failure" in html and "Pause" in html and "Resume" not in html


def test_pause_resume_run_now_and_delete_from_the_detail_page(
    alice: Any, alice_web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    order = _recurring(alice, max_executions=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_web.post(f"/orders/{order.pk}/pause")["Location"] == f"/orders/{order.pk}"
    order.refresh_from_db()
    assert order.status == OrderStatus.PAUSED
    page = alice_web.get(f"/orders/{order.pk}").content.decode()
    assert "Paused." in page and "Resume" in page

    with django_capture_on_commit_callbacks(execute=True):
        alice_web.post(f"/orders/{order.pk}/resume")
    order.refresh_from_db()
    assert order.status == OrderStatus.SCHEDULED

    with django_capture_on_commit_callbacks(execute=True):
        alice_web.post(f"/orders/{order.pk}/run-now")
    assert order.executions.filter(kind="manual").count() == 1

    confirm = alice_web.get(f"/orders/{order.pk}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    assert Order.objects.filter(pk=order.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_web.post(f"/orders/{order.pk}/delete")
    assert response["Location"] == "/orders/"
    assert not Order.objects.filter(pk=order.pk).exists()


def test_retry_from_the_detail_page_re_runs_the_last_failed_run(
    alice: Any, alice_web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    order = _recurring(alice, max_executions=3)
    failed = Execution.objects.create(
        order=order, occurrence=1, scheduled_for=timezone.now(), status=ExecutionStatus.FAILED, attempts=3
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_web.post(f"/orders/{order.pk}/retry", follow=True)
    assert "Retrying run #1." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == ExecutionStatus.RETRYING and failed.job_id


def test_a_refused_action_is_shown_as_a_message_not_an_error_page(alice: Any, alice_web: Client) -> None:
    order = _recurring(alice)
    response = alice_web.post(f"/orders/{order.pk}/retry", follow=True)
    assert response.status_code == 200
    assert "no failed execution to retry" in response.content.decode()


# --- notifications -------------------------------------------------------------------------------------------------


def test_notifications_list_and_mark_read(alice: Any, bob: Any, alice_web: Client, bob_web: Client) -> None:
    order = _one_time(alice)
    first = Notification.objects.create(user=alice, order=order, kind="completed", message="Order done")
    Notification.objects.create(user=alice, kind="failed", message="Order broke")
    page = alice_web.get("/notifications/").content.decode()
    assert "Order done" in page and "Order broke" in page
    assert 'data-testid="unread-count">2<' in page

    assert bob_web.post(f"/notifications/{first.pk}/read").status_code == 404
    alice_web.post(f"/notifications/{first.pk}/read")
    first.refresh_from_db()
    assert first.read_at is not None
    assert 'data-testid="unread-count">1<' in alice_web.get("/notifications/").content.decode()

    alice_web.post("/notifications/read-all")
    assert not Notification.objects.filter(user=alice, read_at__isnull=True).exists()
    assert "unread-count" not in alice_web.get("/notifications/").content.decode()


# --- admin ------------------------------------------------------------------------------------------------------------


def test_admin_lists_orders_links_to_rq_and_pauses_through_the_service(
    alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    staff = make_user("ops@example.com", is_staff=True, is_superuser=True)
    admin = _client_for(staff)
    order = _recurring(alice, "admin target")
    listing = admin.get("/admin/orders/order/?status__exact=scheduled&q=admin")
    html = listing.content.decode()
    assert listing.status_code == 200 and "admin target" in html and 'href="/admin/rq/"' in html
    assert admin.get(f"/admin/orders/order/{order.pk}/change/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/admin/orders/order/", {"action": "pause_orders", "_selected_action": [order.pk]}, follow=True
        )
    assert "Paused 1 order(s)." in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PAUSED
    response = admin.post(
        "/admin/orders/order/", {"action": "pause_orders", "_selected_action": [order.pk]}, follow=True
    )
    assert response.status_code == 200
    response = admin.post(
        "/admin/orders/order/", {"action": "retry_orders", "_selected_action": [order.pk]}, follow=True
    )
    assert "Resume the order before retrying it." in response.content.decode()


def test_admin_reconcile_action_reports(alice: Any) -> None:
    staff = make_user("ops2@example.com", is_staff=True, is_superuser=True)
    order = _recurring(alice)
    response = _client_for(staff).post(
        "/admin/orders/order/", {"action": "reconcile_redis", "_selected_action": [order.pk]}, follow=True
    )
    assert "Reconciled: checked 1 active orders" in response.content.decode()


def test_the_rq_dashboard_is_for_staff_only(alice_web: Client) -> None:
    response = alice_web.get("/admin/rq/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
