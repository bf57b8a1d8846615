"""Calendar orders (cron expressions, every N months, end_at) through the API, the services and the
engine, against the real database and Redis, the real rq-scheduler enqueue step and a real worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client, override_settings
from rest_framework.test import APIClient

from orders import repair, services
from orders.models import Execution, Order
from tests.engine_helpers import log_lines, tick

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")


def future(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def post(client: APIClient, **body: Any) -> Any:
    body.setdefault("order_name", "calendar order")
    return client.post("/api/orders/", body, format="json")


def created(client: APIClient, **body: Any) -> dict[str, Any]:
    response = post(client, **body)
    assert response.status_code == 201, response.json()
    return dict(response.json())


# --- the API -----------------------------------------------------------------------------------------


def test_a_cron_order_is_recurring_and_says_its_schedule_in_words(alice_api: APIClient) -> None:
    body = created(alice_api, cron="30 9 * * 1-5", time_zone="Europe/Berlin")
    assert body["is_recurring"] is True
    assert body["cron"] == "30 9 * * 1-5"
    assert body["repeat_interval"] is None and body["repeat_unit"] is None
    assert body["schedule_description"] == "At 09:30, Monday through Friday (Europe/Berlin)"
    upcoming = alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=10").json()["upcoming"]
    walls = [datetime.fromisoformat(t).astimezone(BERLIN) for t in upcoming]
    assert len(walls) == 10
    assert all((w.hour, w.minute, w.second) == (9, 30, 0) and w.weekday() < 5 for w in walls)
    assert datetime.fromisoformat(body["next_run_at"]) == datetime.fromisoformat(upcoming[0])
    assert datetime.fromisoformat(upcoming[0]) > datetime.now(UTC)
    order = Order.objects.get(pk=body["order_id"])
    assert order.job_id and order.next_run_at == datetime.fromisoformat(upcoming[0])


def test_the_first_cron_run_is_the_first_match_at_or_after_schedule_time(alice_api: APIClient) -> None:
    start = datetime(2031, 3, 3, 9, 30, tzinfo=BERLIN)  # a Monday, exactly on a match
    body = created(alice_api, cron="30 9 * * MON", time_zone="Europe/Berlin", schedule_time=start.isoformat())
    assert datetime.fromisoformat(body["next_run_at"]) == start
    body = created(alice_api, cron="30 9 * * MON", time_zone="Europe/Berlin", schedule_time="2031-03-03T09:30:01")
    assert datetime.fromisoformat(body["next_run_at"]) == start + timedelta(days=7)


@pytest.mark.parametrize(
    "expression,words",
    [
        ("*/0 * * * *", "step of 0"),
        ("61 * * * *", "61 is out of range"),
        ("0 0 * * * *", "this one has 6"),
        ("@reboot", "@reboot"),
        ("0 0 30 2 *", "never runs"),
        ("x" * 10_000, "At most 200 characters"),
        (12, "Not a valid string"),
    ],
)
def test_bad_cron_is_a_400_with_a_field_error(alice_api: APIClient, expression: Any, words: str) -> None:
    response = post(alice_api, cron=expression)
    assert response.status_code == 400
    assert words in " ".join(response.json()["cron"]), response.json()
    assert not Order.objects.exists()


@override_settings(ORDER_MIN_INTERVAL_SECONDS=600)
def test_a_cron_that_runs_more_often_than_the_minimum_is_a_400(alice_api: APIClient) -> None:
    response = post(alice_api, cron="*/5 * * * *")
    assert response.status_code == 400
    assert "5 minutes apart" in response.json()["cron"][0]
    assert post(alice_api, cron="*/10 * * * *").status_code == 201


def test_cron_together_with_an_interval_is_a_400(alice_api: APIClient) -> None:
    response = post(alice_api, cron="0 9 * * *", is_recurring=True, repeat_interval=1, repeat_unit="days")
    assert response.status_code == 400
    assert "not both" in response.json()["cron"][0]


def test_every_field_error_comes_in_one_answer(alice_api: APIClient) -> None:
    response = post(
        alice_api,
        cron="61 * * * *",
        schedule_time=future(7200),
        end_at=future(3600),
        time_zone="Mars/Olympus",
    )
    assert response.status_code == 400
    errors = response.json()
    assert {"cron", "time_zone"} <= set(errors), errors
    # With a zone that parses, the service's word on end_at comes in the same answer as the cron's.
    response = post(alice_api, cron="61 * * * *", schedule_time=future(7200), end_at=future(3600))
    assert set(response.json()) == {"cron", "end_at"}, response.json()
    assert "after schedule_time" in response.json()["end_at"][0]


def test_end_at_before_schedule_time_is_a_400(alice_api: APIClient) -> None:
    response = post(
        alice_api,
        schedule_time=future(7200),
        end_at=future(3600),
        is_recurring=True,
        repeat_interval=1,
        repeat_unit="hours",
    )
    assert response.status_code == 400
    assert "after schedule_time" in response.json()["end_at"][0]


def test_months_with_interval_0_is_a_400(alice_api: APIClient) -> None:
    response = post(alice_api, schedule_time=future(), is_recurring=True, repeat_interval=0, repeat_unit="months")
    assert response.status_code == 400
    assert "repeat_interval" in response.json()


def test_a_monthly_order_runs_on_the_anchors_day_or_the_last_day_of_shorter_months(alice_api: APIClient) -> None:
    body = created(
        alice_api,
        schedule_time="2031-01-31T09:30:00",
        time_zone="Europe/Berlin",
        is_recurring=True,
        repeat_interval=1,
        repeat_unit="months",
    )
    assert body["schedule_description"].startswith("Every month on day 31 at 09:30 (Europe/Berlin)")
    upcoming = alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=14").json()["upcoming"]
    walls = [datetime.fromisoformat(t).astimezone(BERLIN) for t in upcoming]
    assert [w.strftime("%Y-%m-%d %H:%M") for w in walls] == [
        "2031-01-31 09:30",
        "2031-02-28 09:30",
        "2031-03-31 09:30",
        "2031-04-30 09:30",
        "2031-05-31 09:30",
        "2031-06-30 09:30",
        "2031-07-31 09:30",
        "2031-08-31 09:30",
        "2031-09-30 09:30",
        "2031-10-31 09:30",
        "2031-11-30 09:30",
        "2031-12-31 09:30",
        "2032-01-31 09:30",
        "2032-02-29 09:30",
    ]


def test_end_at_cuts_the_upcoming_runs_and_max_executions_whichever_first(alice_api: APIClient) -> None:
    body = created(
        alice_api,
        cron="0 12 * * *",
        time_zone="UTC",
        schedule_time="2031-05-01T00:00:00Z",
        end_at="2031-05-04T12:00:00Z",
    )
    upcoming = alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=10").json()["upcoming"]
    assert [t[:10] for t in upcoming] == ["2031-05-01", "2031-05-02", "2031-05-03", "2031-05-04"]
    body = created(
        alice_api,
        cron="0 12 * * *",
        time_zone="UTC",
        schedule_time="2031-05-01T00:00:00Z",
        end_at="2031-05-04T12:00:00Z",
        max_executions=2,
    )
    upcoming = alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=10").json()["upcoming"]
    assert len(upcoming) == 2
    assert body["end_at"] == "2031-05-04T12:00:00+00:00"


def test_an_interval_order_converts_to_cron_and_then_to_one_time_in_one_chain(alice_api: APIClient) -> None:
    body = created(alice_api, schedule_time=future(), is_recurring=True, repeat_interval=1, repeat_unit="hours")
    path = f"/api/orders/{body['order_id']}"
    response = alice_api.patch(path, {"cron": "15 */2 * * *"}, format="json")
    assert response.status_code == 200, response.json()
    changed = response.json()
    assert changed["cron"] == "15 */2 * * *" and changed["repeat_interval"] is None and changed["is_recurring"]
    assert datetime.fromisoformat(changed["next_run_at"]).minute == 15
    response = alice_api.patch(path, {"is_recurring": False, "schedule_time": future(7200)}, format="json")
    assert response.status_code == 200, response.json()
    once = response.json()
    assert once["cron"] is None and not once["is_recurring"]
    assert once["schedule_description"].startswith("Once, on ")
    response = alice_api.patch(path, {"is_recurring": True, "repeat_interval": 2, "repeat_unit": "days"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["cron"] is None and response.json()["repeat_unit"] == "days"


def test_the_openapi_schema_documents_cron_end_at_and_the_words(alice_api: APIClient) -> None:
    schema = alice_api.get("/api/schema/?format=json").json()
    text = str(schema)
    assert "schedule_description" in text and "end_at" in text
    assert "30 9 * * 1-5" in text  # the cron example


# --- the engine ----------------------------------------------------------------------------------------


def test_a_cron_order_runs_on_whole_minutes_exactly_max_times(alice_api: APIClient) -> None:
    now = datetime.now(UTC)
    with time_machine.travel(now, tick=True) as traveller:
        body = created(alice_api, cron="* * * * *", max_executions=2, time_zone="UTC")
        order = Order.objects.get(pk=body["order_id"])
        first = order.next_run_at
        assert first is not None and first.second == 0 and first.microsecond == 0 and first > now
        for minute in range(3):
            traveller.move_to(first + timedelta(minutes=minute, seconds=0.2))
            tick()
            tick()
        order.refresh_from_db()
    runs = list(Execution.objects.filter(order=order).order_by("occurrence"))
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert [r.scheduled_for for r in runs] == [first, first + timedelta(minutes=1)]
    assert all(r.started_at is not None and r.started_at >= r.scheduled_for for r in runs)
    assert order.status == "completed" and order.executions_count == 2


def test_reconcile_after_redis_loss_places_the_cron_orders_next_run(alice_api: APIClient) -> None:
    from orders import jobqueue

    body = created(alice_api, cron="0 9 * * 1-5", time_zone="Europe/Berlin")
    order = Order.objects.get(pk=body["order_id"])
    jobqueue.connection().flushdb()
    report = repair.reconcile()
    assert report.scheduled == 1
    order.refresh_from_db()
    assert order.job_id in jobqueue.live_job_ids([order.job_id])
    assert order.next_run_at == datetime.fromisoformat(body["next_run_at"])


def test_pause_and_resume_keep_the_cron_grid(alice_api: APIClient) -> None:
    body = created(alice_api, cron="0 9 * * *", time_zone="Europe/Berlin")
    path = f"/api/orders/{body['order_id']}"
    assert alice_api.post(f"{path}/pause").status_code == 200
    resumed = alice_api.post(f"{path}/resume").json()
    assert resumed["next_run_at"] == body["next_run_at"] and resumed["status"] == "scheduled"


def test_the_order_log_names_the_schedule(alice_api: APIClient) -> None:
    body = created(alice_api, cron="0 9 * * *", time_zone="Europe/Berlin")
    lines = [e for e in log_lines() if e.get("order_id") == body["order_id"] and e["event"] == "created"]
    assert lines and lines[0]["schedule"] == "At 09:00 (Europe/Berlin)"


# --- the pages ----------------------------------------------------------------------------------------


def _page_form(**overrides: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(hours=2)).astimezone(BERLIN).replace(minute=30, second=0)
    data = {
        "order_name": "Morning report",
        "kind": "recurring",
        "repeat_kind": "calendar",
        "cron": "30 9 * * 1-5",
        "schedule_time": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "time_zone": "Europe/Berlin",
        "repeat_interval": "",
        "repeat_unit": "days",
        "end_at": "",
        "unlimited": "on",
        "max_executions": "",
        "misfire_policy": "run_once",
    }
    data.update(overrides)
    return data


def test_the_form_creates_a_cron_order_and_its_page_says_it_in_words(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    form_page = client.get("/orders/new").content.decode()
    assert "Every weekday at" in form_page and 'data-cron-preset="{minute} {hour} * * 1-5"' in form_page
    response = client.post("/orders/new", _page_form(end_at="2031-12-31T18:00:00"))
    assert response.status_code == 302, response.content.decode()[:2000]
    order = Order.objects.get(user=alice)
    assert order.cron == "30 9 * * 1-5" and order.repeat_interval is None and order.is_recurring
    assert order.end_at == datetime(2031, 12, 31, 17, 0, tzinfo=UTC)
    page = client.get(f"/orders/{order.pk}").content.decode()
    assert "At 09:30, Monday through Friday (Europe/Berlin)" in page
    edit = client.get(f"/orders/{order.pk}/edit")
    assert edit.context["form"].initial["repeat_kind"] == "calendar"
    assert "At 09:30, Monday through Friday (Europe/Berlin)" in edit.content.decode()


def test_the_form_shows_a_bad_cron_beside_the_field(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    response = client.post("/orders/new", _page_form(cron="0 0 30 2 *"))
    assert response.status_code == 400
    assert "never runs" in response.content.decode()
    assert not Order.objects.exists()


def test_the_preview_says_the_schedule_in_words_and_lists_the_next_runs(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    body = client.post("/orders/preview.json", _page_form(cron="0 9 1 * *")).json()
    assert body["description"] == "At 09:00, on day 1 of the month (Europe/Berlin)"
    assert len(body["runs"]) == 5 and all(" 09:00:00 " in run and run[8:10] == "01" for run in body["runs"])
    bad = client.post("/orders/preview.json", _page_form(cron="61 * * * *"))
    # A half-filled form is not an error: the answer names what keeps a preview from being shown.
    assert bad.status_code == 200 and "61 is out of range" in bad.json()["errors"]["cron"][0]
    assert bad.json()["runs"] == [] and bad.json()["description"] == ""
    never = client.post("/orders/preview.json", _page_form(cron="0 0 30 2 *")).json()
    assert "never runs" in never["errors"]["cron"][0]
    monthly = client.post(
        "/orders/preview.json", _page_form(repeat_kind="interval", repeat_interval="2", repeat_unit="months")
    ).json()
    assert monthly["description"].startswith("Every 2 months on day ")


def test_the_admin_shows_the_cron_and_the_words(alice_api: APIClient) -> None:
    from accounts.models import User

    body = created(alice_api, cron="0 12 * * 5L", time_zone="Europe/Berlin", end_at="2031-06-30T12:00:00")
    root = User.objects.create_superuser(email="root@example.com", password="root-password-123")
    client = Client()
    client.force_login(root)
    words = "At 12:00, on the last Friday of the month (Europe/Berlin)"
    listing = client.get("/admin/orders/order/").content.decode()
    assert words in listing
    page = client.get(f"/admin/orders/order/{body['order_id']}/change/").content.decode()
    assert words in page and "0 12 * * 5L" in page


def test_a_cron_order_completes_at_its_last_run_before_end_at(alice_api: APIClient) -> None:
    now = datetime.now(UTC)
    with time_machine.travel(now, tick=True) as traveller:
        first = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        body = created(
            alice_api,
            cron="* * * * *",
            time_zone="UTC",
            schedule_time=first.isoformat(),
            end_at=(first + timedelta(minutes=1, seconds=30)).isoformat(),
        )
        order = Order.objects.get(pk=body["order_id"])
        for minute in range(4):
            traveller.move_to(first + timedelta(minutes=minute, seconds=0.2))
            tick()
            tick()
        order.refresh_from_db()
    runs = list(Execution.objects.filter(order=order).order_by("occurrence"))
    assert [r.scheduled_for for r in runs] == [first, first + timedelta(minutes=1)]
    assert order.status == "completed" and order.next_run_at is None


def test_a_cron_order_resumed_after_days_skips_by_its_policy_and_returns_to_the_grid(alice_api: APIClient) -> None:
    now = datetime.now(UTC)
    with time_machine.travel(now, tick=True) as traveller:
        body = created(alice_api, cron="*/10 * * * *", time_zone="Asia/Kathmandu", misfire_policy="skip")
        order = Order.objects.get(pk=body["order_id"])
        first = order.next_run_at
        assert first is not None
        assert alice_api.post(f"/api/orders/{order.pk}/pause").status_code == 200
        traveller.move_to(first + timedelta(days=3, minutes=4))
        services.order_resume(order=order)  # the API token has expired by then
        tick()
        tick()
        order.refresh_from_db()
        skipped = Execution.objects.filter(order=order, status="skipped").count()
        # Every 10 minutes for 3 days and 4 minutes: 433 slots had fallen due, all skipped.
        assert skipped == 3 * 144 + 1
        assert order.executions_count == 0
        assert order.next_grid_index == skipped + 1
        assert order.next_run_at == first + timedelta(days=3, minutes=10)
        traveller.move_to(order.next_run_at + timedelta(seconds=0.2))
        tick()
        tick()
        order.refresh_from_db()
    assert order.executions_count == 1
    assert Execution.objects.get(order=order, status="succeeded").scheduled_for == first + timedelta(days=3, minutes=10)


def test_cron_orders_due_in_the_same_minute_run_once_each_in_batches(alice_api: APIClient) -> None:
    now = datetime.now(UTC)
    with time_machine.travel(now, tick=True) as traveller:
        ids = [created(alice_api, cron="* * * * *", max_executions=1, time_zone="UTC")["order_id"] for _ in range(6)]
        first = Order.objects.get(pk=ids[0]).next_run_at
        assert first is not None
        traveller.move_to(first + timedelta(seconds=0.2))
        for _ in range(3):
            tick()
    runs = list(Execution.objects.filter(order_id__in=ids))
    assert sorted(r.order_id for r in runs) == sorted(ids)
    assert all(r.status == "succeeded" and r.scheduled_for == first for r in runs)
    assert all(r.started_at is not None and r.started_at >= first for r in runs)
    assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"completed"}


def test_run_now_on_a_cron_order_counts_and_keeps_the_grid(alice_api: APIClient) -> None:
    body = created(alice_api, cron="0 9 * * *", time_zone="Europe/Berlin", max_executions=3)
    response = alice_api.post(f"/api/orders/{body['order_id']}/run-now")
    assert response.status_code == 202
    assert response.json()["next_run_at"] == body["next_run_at"]
    assert response.json()["executions_count"] == 1
