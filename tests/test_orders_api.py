"""Every orders API path, against the real database and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from orders import jobqueue
from orders.api.representation import ORDER_JSON_FIELDS
from orders.models import Notification, Order
from tests.conftest import api_client_for, make_user
from tests.engine_helpers import run_until

pytestmark = pytest.mark.django_db(transaction=True)


def future(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def one_time(client: APIClient, path: str = "/api/orders/", **extra: Any) -> dict[str, Any]:
    body = {"order_name": "Buy 10 AAPL", "schedule_time": future(), **extra}
    response = client.post(path, body, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


@pytest.mark.parametrize("path", ["/api/orders/", "/api/orders", "/api/orders/create", "/api/orders/create/"])
def test_create_on_every_path_returns_the_order(alice: Any, alice_api: APIClient, path: str) -> None:
    body = one_time(alice_api, path)
    order = Order.objects.get(pk=body["order_id"])
    assert order.user == alice
    assert body["status"] == "scheduled"
    assert body["job_id"] == order.job_id and body["job_id"] in jobqueue.live_job_ids([order.job_id])
    # The one field list of the order's shape, in order (the original API's fields are among them).
    assert tuple(body) == ORDER_JSON_FIELDS
    assert {"order_id", "order_name", "schedule_time", "status", "job_id", "next_run_at"} <= set(body)


def test_naive_time_is_read_in_the_orders_zone_and_echoed_with_offset(alice_api: APIClient) -> None:
    body = one_time(alice_api, schedule_time="2031-07-01T09:00:00", time_zone="Europe/Berlin")
    assert body["schedule_time"] == "2031-07-01T09:00:00+02:00"
    assert Order.objects.get(pk=body["order_id"]).schedule_time == datetime(2031, 7, 1, 7, 0, tzinfo=UTC)


def test_time_zone_defaults_to_the_users(alice: Any, alice_api: APIClient) -> None:
    alice.time_zone = "America/New_York"
    alice.save()
    body = one_time(alice_api, schedule_time="2031-01-15T09:00:00")
    assert body["time_zone"] == "America/New_York"
    assert body["schedule_time"] == "2031-01-15T09:00:00-05:00"


def test_read_only_fields_are_ignored(alice: Any, bob: Any, alice_api: APIClient) -> None:
    body = one_time(
        alice_api,
        status="completed",
        executions_count=7,
        job_id="evil",
        user=bob.pk,
        user_id=bob.pk,
        order_id=999,
        next_run_at=future(10),
    )
    order = Order.objects.get(pk=body["order_id"])
    assert (order.user, order.status, order.executions_count) == (alice, "scheduled", 0)
    assert order.job_id != "evil" and order.pk != 999


def test_recurring_create_and_upcoming_in_the_orders_zone(alice_api: APIClient) -> None:
    body = one_time(
        alice_api,
        schedule_time="2031-03-28T09:00:00",
        time_zone="Europe/Berlin",
        is_recurring=True,
        repeat_interval=1,
        repeat_unit="days",
        max_executions=3,
    )
    response = alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=10")
    assert response.status_code == 200
    # 2031-03-30 is the spring-forward day: still 09:00 local, with the new offset.
    assert response.json()["upcoming"] == [
        "2031-03-28T09:00:00+01:00",
        "2031-03-29T09:00:00+01:00",
        "2031-03-30T09:00:00+02:00",
    ]
    assert alice_api.get(f"/api/orders/{body['order_id']}/upcoming?count=0").status_code == 400


def test_list_is_scoped_filtered_searched_ordered_and_paginated(alice_api: APIClient, bob_api: APIClient) -> None:
    for i in range(3):
        one_time(alice_api, order_name=f"alpha {i}", schedule_time=future(1000 + i))
    one_time(alice_api, order_name="beta", is_recurring=True, repeat_interval=1, repeat_unit="hours")
    one_time(bob_api, order_name="bob's")
    listing = alice_api.get("/api/orders/").json()
    assert listing["count"] == 4
    assert all(o["order_name"] != "bob's" for o in listing["results"])
    assert alice_api.get("/api/orders/?is_recurring=true").json()["count"] == 1
    assert alice_api.get("/api/orders/?status=scheduled&search=ALPHA").json()["count"] == 3
    ordered = alice_api.get("/api/orders/?search=alpha&ordering=-schedule_time").json()["results"]
    assert [o["order_name"] for o in ordered] == ["alpha 2", "alpha 1", "alpha 0"]
    page = alice_api.get("/api/orders/?page_size=2&page=2").json()
    assert len(page["results"]) == 2 and page["previous"] is not None
    for bad in ("status=done", "is_recurring=maybe", "ordering=password", "page=abc", "page_size=100000"):
        response = alice_api.get(f"/api/orders/?{bad}")
        assert response.status_code == 400, bad
        assert response.json()


def test_get_put_patch_delete(alice_api: APIClient) -> None:
    order_id = one_time(alice_api)["order_id"]
    for suffix in ("", "/"):
        assert alice_api.get(f"/api/orders/{order_id}{suffix}").status_code == 200
    patched = alice_api.patch(f"/api/orders/{order_id}", {"order_name": "renamed"}, format="json")
    assert patched.status_code == 200 and patched.json()["order_name"] == "renamed"
    new_time = future(7200)
    put = alice_api.put(f"/api/orders/{order_id}/", {"order_name": "put", "schedule_time": new_time}, format="json")
    assert put.status_code == 200
    assert Order.objects.get(pk=order_id).schedule_time == datetime.fromisoformat(new_time)
    incomplete_put = alice_api.put(f"/api/orders/{order_id}", {"order_name": "only a name"}, format="json")
    assert incomplete_put.status_code == 200  # schedule_time is optional: the current one is kept
    job_id = Order.objects.get(pk=order_id).job_id
    assert alice_api.delete(f"/api/orders/{order_id}").status_code == 204
    assert not Order.objects.filter(pk=order_id).exists()
    assert jobqueue.live_job_ids([job_id]) == set()
    assert alice_api.get(f"/api/orders/{order_id}").status_code == 404


def test_convert_through_the_api(alice_api: APIClient) -> None:
    order_id = one_time(alice_api)["order_id"]
    response = alice_api.patch(
        f"/api/orders/{order_id}",
        {"is_recurring": True, "repeat_interval": 5, "repeat_unit": "minutes", "max_executions": 4},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["is_recurring"] is True and response.json()["max_executions"] == 4
    back = alice_api.patch(
        f"/api/orders/{order_id}", {"is_recurring": False, "schedule_time": future(60)}, format="json"
    )
    assert back.status_code == 200
    assert back.json()["repeat_interval"] is None and back.json()["max_executions"] is None


def test_actions_pause_resume_run_now_retry_and_history(settings: Any, alice_api: APIClient) -> None:
    order_id = one_time(alice_api, is_recurring=True, repeat_interval=1, repeat_unit="hours", max_executions=2)[
        "order_id"
    ]
    assert alice_api.post(f"/api/orders/{order_id}/pause").json()["status"] == "paused"
    assert alice_api.post(f"/api/orders/{order_id}/run-now").status_code == 400  # resume first
    assert alice_api.post(f"/api/orders/{order_id}/resume/").json()["status"] == "scheduled"
    assert alice_api.post(f"/api/orders/{order_id}/retry").status_code == 400  # nothing failed yet
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 1
    assert alice_api.post(f"/api/orders/{order_id}/run-now").status_code == 202
    run_until(lambda: Order.objects.get(pk=order_id).last_result == "failed", timeout=10)
    settings.ORDER_EXECUTOR = "orders.executors.simulate_placement"
    assert alice_api.post(f"/api/orders/{order_id}/retry").status_code == 202
    run_until(lambda: Order.objects.get(pk=order_id).last_result == "succeeded", timeout=10)
    history = alice_api.get(f"/api/orders/{order_id}/executions").json()
    assert history["count"] == 1
    (run,) = history["results"]
    assert run["status"] == "succeeded" and run["attempts"] == 2 and run["kind"] == "manual"
    assert [a["status"] for a in run["attempt_history"]] == ["failed", "succeeded"]


def test_another_users_order_is_404_everywhere(alice_api: APIClient, bob_api: APIClient) -> None:
    order_id = one_time(alice_api)["order_id"]
    for method, path in [
        ("get", ""),
        ("put", ""),
        ("patch", ""),
        ("delete", ""),
        ("get", "/executions"),
        ("get", "/upcoming"),
        ("post", "/pause"),
        ("post", "/resume"),
        ("post", "/run-now"),
        ("post", "/retry"),
    ]:
        response = getattr(bob_api, method)(f"/api/orders/{order_id}{path}", {"order_name": "x"}, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "Not found."}
    order = Order.objects.get(pk=order_id)
    assert order.order_name == "Buy 10 AAPL" and order.status == "scheduled"


def test_bad_input_is_400_with_field_errors(alice_api: APIClient) -> None:
    cases = [
        ({"order_name": "", "schedule_time": future()}, "order_name"),
        ({"order_name": "x"}, "schedule_time"),
        ({"order_name": "x", "schedule_time": "2020-01-01T00:00:00Z"}, "schedule_time"),
        ({"order_name": "x", "schedule_time": "soon"}, "schedule_time"),
        (
            {"order_name": "x", "schedule_time": future(), "is_recurring": True, "repeat_unit": "days"},
            "repeat_interval",
        ),
        (
            {
                "order_name": "x",
                "schedule_time": future(),
                "is_recurring": True,
                "repeat_interval": 1,
                "repeat_unit": "fortnights",
            },
            "repeat_unit",
        ),
        ({"order_name": "x", "schedule_time": future(), "time_zone": "Mars/Olympus"}, "time_zone"),
    ]
    for body, field in cases:
        response = alice_api.post("/api/orders/", body, format="json")
        assert response.status_code == 400, body
        assert field in response.json(), (body, response.json())
    assert Order.objects.count() == 0


def test_notifications_list_and_read(alice: Any, alice_api: APIClient, bob_api: APIClient) -> None:
    order_id = one_time(alice_api, schedule_time=future(2))["order_id"]
    run_until(lambda: Order.objects.get(pk=order_id).status == "completed", timeout=15)
    listing = alice_api.get("/api/notifications").json()
    assert listing["count"] == 1
    (note,) = listing["results"]
    assert note["kind"] == "completed" and note["order_id"] == order_id and note["read"] is False
    assert bob_api.post(f"/api/notifications/{note['id']}/read").status_code == 404
    read = alice_api.post(f"/api/notifications/{note['id']}/read/")
    assert read.status_code == 200 and read.json()["read"] is True
    assert alice_api.get("/api/notifications?unread=true").json()["count"] == 0
    assert Notification.objects.get(pk=note["id"]).read_at is not None


def test_unauthenticated_requests_are_401_json() -> None:
    response = APIClient().get("/api/orders/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in response.json()


def test_schema_and_docs_are_served(alice_api: APIClient) -> None:
    schema = APIClient().get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/orders/", "/api/orders/{order_id}/run-now", "/api/notifications"):
        assert path in text
    assert APIClient().get("/api/docs/").status_code == 200


def test_per_user_cap_on_active_orders(settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 2
    client = api_client_for(make_user())
    one_time(client)
    one_time(client)
    response = client.post("/api/orders/", {"order_name": "third", "schedule_time": future()}, format="json")
    assert response.status_code == 400
    assert "at most 2 active orders" in str(response.json())
