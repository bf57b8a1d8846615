"""Idempotency-Key on order creation, run-now and retry: a request repeated after a lost answer acts
once (one order, one run, one retry)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from orders import jobqueue, services
from orders.models import Execution, ExecutionKind, ExecutionStatus, Order
from orders.services import idempotency
from tests.conftest import api_client_for, make_user
from tests.engine_helpers import log_lines

pytestmark = pytest.mark.django_db(transaction=True)


def _body(**extra: Any) -> dict[str, Any]:
    due = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()
    return {"order_name": "Buy 10 AAPL", "schedule_time": due, **extra}


def _race(user: Any, request: Callable[[APIClient], Any], attempts: int = 8) -> list[Any]:
    """Send `request` from `attempts` threads released at once, each with its own connection."""
    barrier = threading.Barrier(attempts)
    responses: list[Any] = []

    def attempt() -> None:
        client = api_client_for(user)
        barrier.wait()
        try:
            responses.append(request(client))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(responses) == attempts
    return responses


def _post(client: APIClient, body: dict[str, Any], key: str | None, path: str = "/api/orders/") -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(path, body, format="json", headers=headers)


@pytest.mark.parametrize("path", ["/api/orders/", "/api/orders/create"])
def test_a_retried_create_returns_the_first_order_and_schedules_it_once(
    alice: Any, alice_api: APIClient, path: str
) -> None:
    body = _body()
    first = _post(alice_api, body, "key-1", path)
    again = _post(alice_api, body, "key-1", path)
    assert first.status_code == again.status_code == 201, (first.json(), again.json())
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["order_id"] == first.json()["order_id"]
    order = Order.objects.get(user=alice)
    assert order.job_id == first.json()["job_id"]
    assert jobqueue.live_job_ids([order.job_id]) == {order.job_id}
    events = [(line["event"], line["order_id"]) for line in log_lines() if line["event"].startswith("create")]
    assert events == [("created", order.pk), ("create_replayed", order.pk)]


def test_the_key_in_structured_field_quotes_is_the_same_key(alice: Any, alice_api: APIClient) -> None:
    body = _body()
    first = _post(alice_api, body, "abc")
    again = _post(alice_api, body, '"abc"')
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["order_id"] == first.json()["order_id"]


def test_a_recurring_create_without_a_time_replays_though_now_has_moved(alice: Any, alice_api: APIClient) -> None:
    # "now" is filled in by the server: the key is matched on what the client sent, not on that.
    body = {"order_name": "tick", "is_recurring": True, "repeat_interval": 1, "repeat_unit": "hours"}
    first = _post(alice_api, body, "tick-1")
    again = _post(alice_api, body, "tick-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert Order.objects.filter(user=alice).count() == 1


def test_the_same_key_with_another_body_is_422_and_changes_nothing(alice: Any, alice_api: APIClient) -> None:
    body = _body()
    first = _post(alice_api, body, "key-2")
    other = _post(alice_api, {**body, "order_name": "Sell 10 AAPL"}, "key-2")
    assert other.status_code == 422
    errors = other.json()["Idempotency-Key"]
    assert errors and f"order {first.json()['order_id']}" in errors[0]
    assert list(Order.objects.filter(user=alice).values_list("order_name", flat=True)) == ["Buy 10 AAPL"]


def test_keys_differ_in_case(alice: Any, alice_api: APIClient) -> None:
    # MariaDB compares strings case-insensitively (utf8mb4_unicode_ci); keys must not be.
    body = _body()
    lower = _post(alice_api, body, "key-abc")
    upper = _post(alice_api, body, "KEY-ABC")
    assert (lower.status_code, upper.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in upper.headers
    assert Order.objects.filter(user=alice).count() == 2


def test_keys_are_per_user(alice: Any, bob: Any, alice_api: APIClient, bob_api: APIClient) -> None:
    body = _body()
    mine = _post(alice_api, body, "shared-key")
    theirs = _post(bob_api, body, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["order_id"] != theirs.json()["order_id"]
    assert Order.objects.get(pk=theirs.json()["order_id"]).user == bob


def test_without_a_key_every_create_is_a_new_order(alice: Any, alice_api: APIClient) -> None:
    body = _body()
    assert _post(alice_api, body, None).status_code == 201
    assert _post(alice_api, body, None).status_code == 201
    assert Order.objects.filter(user=alice).count() == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9", '""'])
def test_a_malformed_key_is_a_field_error_and_creates_nothing(alice: Any, alice_api: APIClient, key: str) -> None:
    response = _post(alice_api, _body(), key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Order.objects.filter(user=alice).exists()


def test_a_key_of_128_characters_is_accepted(alice_api: APIClient) -> None:
    assert _post(alice_api, _body(), "k" * 128).status_code == 201


def test_bad_input_with_a_key_is_400_and_the_key_stays_free(alice: Any, alice_api: APIClient) -> None:
    bad = _post(alice_api, {"order_name": "x", "schedule_time": "yesterday"}, "key-3")
    assert bad.status_code == 400 and "schedule_time" in bad.json()
    fixed = _post(alice_api, _body(order_name="x"), "key-3")
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers


def test_the_schema_documents_the_key_and_the_422(alice_api: APIClient) -> None:
    schema = alice_api.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}).json()
    for path in ("/api/orders/", "/api/orders/create/"):
        operation = schema["paths"][path]["post"]
        assert "Idempotency-Key" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "422" in operation["responses"]
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]


def test_eight_attempts_racing_with_one_key_make_one_order(alice: Any) -> None:
    """On MariaDB they take turns on the user's row lock and meet at the unique index; on SQLite (the
    default) its one writer at a time lines them up. Either way each loser answers with the winner's order."""
    body = _body()
    responses = _race(alice, lambda client: _post(client, body, "raced"))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert Order.objects.filter(user=alice).count() == 1
    assert [line["event"] for line in log_lines() if line["event"].startswith("create")].count("create_replayed") == 7


def test_the_service_replays_and_refuses_a_changed_definition(alice: Any) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    definition = services.OrderDefinition(order_name="svc", schedule_time=due)
    order, replayed = services.order_create_once(user=alice, definition=definition, idempotency_key="svc-1")
    again, replayed_again = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="svc", schedule_time=due), idempotency_key="svc-1"
    )
    assert (replayed, replayed_again) == (False, True) and again.pk == order.pk
    with pytest.raises(services.IdempotencyKeyReused) as caught:
        services.order_create_once(
            user=alice,
            definition=services.OrderDefinition(order_name="svc", schedule_time=due + timedelta(seconds=1)),
            idempotency_key="svc-1",
        )
    assert caught.value.order.pk == order.pk


def _lose_the_first_look_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first look-up miss, as it does for an attempt racing the one that commits first."""
    real = idempotency._replayable
    calls: list[str] = []

    def racing(user: Any, digest: str, fingerprint: str) -> Order | None:
        calls.append(digest)
        return None if len(calls) == 1 else real(user, digest, fingerprint)

    monkeypatch.setattr(idempotency, "_replayable", racing)
    return calls


def test_the_loser_of_a_race_at_the_unique_index_answers_with_the_winners_order(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    definition = services.OrderDefinition(order_name="race", schedule_time=due)
    winner, _ = services.order_create_once(user=alice, definition=definition, idempotency_key="race-1")
    calls = _lose_the_first_look_up(monkeypatch)
    loser, replayed = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="race", schedule_time=due), idempotency_key="race-1"
    )
    assert len(calls) == 2, "the insert did not meet the unique index"
    assert (loser.pk, replayed) == (winner.pk, True)
    assert Order.objects.filter(user=alice).count() == 1


def test_the_loser_of_a_race_for_the_last_place_under_the_cap_answers_with_the_winners_order(
    alice: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 1
    due = datetime.now(UTC) + timedelta(hours=1)
    winner, _ = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="cap", schedule_time=due), idempotency_key="cap-1"
    )
    _lose_the_first_look_up(monkeypatch)
    loser, replayed = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="cap", schedule_time=due), idempotency_key="cap-1"
    )
    assert (loser.pk, replayed) == (winner.pk, True)
    # A different key still meets the cap.
    with pytest.raises(ValidationError):
        services.order_create_once(
            user=alice,
            definition=services.OrderDefinition(order_name="cap", schedule_time=due),
            idempotency_key="cap-2",
        )


def test_a_replay_places_the_job_a_failed_commit_never_placed(alice: Any) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    order, _ = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="lost", schedule_time=due), idempotency_key="lost-1"
    )
    jobqueue.cancel(order.job_id)
    assert not jobqueue.live_job_ids([order.job_id])
    again, replayed = services.order_create_once(
        user=alice, definition=services.OrderDefinition(order_name="lost", schedule_time=due), idempotency_key="lost-1"
    )
    assert replayed and again.pk == order.pk
    # Reconcile's repair gives it a job of its own; the answer shows the order as it now is.
    assert again.job_id == Order.objects.get(pk=order.pk).job_id
    assert jobqueue.live_job_ids([again.job_id]) == {again.job_id}


def test_the_key_is_stored_as_its_digest(alice: Any, alice_api: APIClient) -> None:
    response = _post(alice_api, _body(), "visible-key")
    order = Order.objects.get(pk=response.json()["order_id"])
    assert order.idempotency_key == services.idempotency_key_digest("visible-key") != "visible-key"


# --- the create form ---------------------------------------------------------------------------------


def _form_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form_key(client: Client) -> str:
    page = client.get("/orders/new").content.decode()
    found = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page)
    assert found, "the create form carries no key"
    return found.group(1)


def _form(key: str, **overrides: Any) -> dict[str, Any]:
    due = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    data = {
        "order_name": "From the form",
        "kind": "once",
        "schedule_time": due,
        "time_zone": "UTC",
        "repeat_interval": "",
        "repeat_unit": "days",
        "max_executions": "",
        "misfire_policy": "run_once",
        "idempotency_key": key,
    }
    data.update(overrides)
    return data


def test_a_form_sent_twice_schedules_one_order() -> None:
    user = make_user()
    client = _form_client(user)
    key = _form_key(client)
    assert key != _form_key(client), "every form needs a key of its own"
    data = _form(key)
    first = client.post("/orders/new", data)
    again = client.post("/orders/new", data, follow=True)
    order = Order.objects.get(user=user)
    assert first.status_code == 302 and first["Location"] == f"/orders/{order.pk}"
    assert again.redirect_chain[-1][0] == f"/orders/{order.pk}"
    assert "had already been sent" in again.content.decode()


def test_a_sent_form_changed_and_sent_again_asks_before_a_second_order() -> None:
    user = make_user()
    client = _form_client(user)
    key = _form_key(client)
    assert client.post("/orders/new", _form(key)).status_code == 302
    changed = client.post("/orders/new", _form(key, order_name="Changed"))
    assert changed.status_code == 409
    page = changed.content.decode()
    assert "This form has already scheduled" in page
    new_key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page)
    assert new_key and new_key.group(1) != key
    assert client.post("/orders/new", _form(new_key.group(1), order_name="Changed")).status_code == 302
    assert sorted(Order.objects.filter(user=user).values_list("order_name", flat=True)) == ["Changed", "From the form"]


# --- run-now -------------------------------------------------------------------------------------------


def _manual_runs(order_id: int) -> list[Execution]:
    return list(Execution.objects.filter(order_id=order_id, kind=ExecutionKind.MANUAL))


def test_a_repeated_run_now_starts_one_run(alice_api: APIClient) -> None:
    order_id = _post(alice_api, _body(), None).json()["order_id"]
    path = f"/api/orders/{order_id}/run-now"
    first = alice_api.post(path, headers={"Idempotency-Key": "run-1"})
    again = alice_api.post(path, headers={"Idempotency-Key": "run-1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    runs = _manual_runs(order_id)
    assert len(runs) == 1 and runs[0].idempotency_key == services.idempotency_key_digest("run-1")
    assert again.json()["executions_count"] == first.json()["executions_count"] == 1
    assert [line["event"] for line in log_lines() if line["event"].startswith("run_now")] == [
        "run_now",
        "run_now_replayed",
    ]


def test_run_now_keys_are_per_order_and_runs_without_a_key_are_all_new(alice_api: APIClient) -> None:
    hourly = _body(is_recurring=True, repeat_interval=1, repeat_unit="hours", max_executions=10)
    one = _post(alice_api, hourly, None).json()["order_id"]
    two = _post(alice_api, hourly, None).json()["order_id"]
    for order_id in (one, two):
        assert alice_api.post(f"/api/orders/{order_id}/run-now", headers={"Idempotency-Key": "k"}).status_code == 202
    assert len(_manual_runs(one)) == len(_manual_runs(two)) == 1
    assert alice_api.post(f"/api/orders/{one}/run-now").status_code == 202
    assert alice_api.post(f"/api/orders/{one}/run-now").status_code == 202
    assert len(_manual_runs(one)) == 3


def test_a_malformed_run_now_key_is_400_and_starts_nothing(alice_api: APIClient) -> None:
    order_id = _post(alice_api, _body(), None).json()["order_id"]
    response = alice_api.post(f"/api/orders/{order_id}/run-now", headers={"Idempotency-Key": "no spaces"})
    assert response.status_code == 400 and "Idempotency-Key" in response.json()
    assert not _manual_runs(order_id)


def test_a_repeated_run_now_places_the_job_a_failed_commit_never_placed(alice: Any) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    order = services.order_create(user=alice, definition=services.OrderDefinition(order_name="r", schedule_time=due))
    execution, _ = services.order_run_now_once(order=order, idempotency_key="r-1")
    jobqueue.cancel(execution.job_id)
    assert not jobqueue.live_job_ids([execution.job_id])
    again, replayed = services.order_run_now_once(order=order, idempotency_key="r-1")
    assert replayed and again.pk == execution.pk
    assert jobqueue.live_job_ids([again.job_id]) == {again.job_id}


@pytest.mark.parametrize("state", ["paused", "succeeded"])
def test_a_repeated_run_now_places_nothing_for_a_run_that_is_not_waiting_to_start(alice: Any, state: str) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    order = services.order_create(user=alice, definition=services.OrderDefinition(order_name="r", schedule_time=due))
    execution, _ = services.order_run_now_once(order=order, idempotency_key="r-2")
    if state == "paused":
        services.order_pause(order=order)
    else:
        Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.SUCCEEDED)
    jobqueue.cancel(execution.job_id)
    before = Execution.objects.get(pk=execution.pk).job_id
    again, replayed = services.order_run_now_once(order=order, idempotency_key="r-2")
    assert replayed and again.pk == execution.pk
    assert again.job_id == before
    assert not jobqueue.live_job_ids([execution.job_id]), "a job was placed for a run that cannot start"


def _button_key(client: Client, order: Order, action: str) -> str:
    page = client.get(f"/orders/{order.pk}").content.decode()
    found = re.search(
        rf'action="/orders/{order.pk}/{action}">.*?name="idempotency_key" value="([0-9a-f]{{32}})"', page, re.S
    )
    assert found, f"the {action} button carries no key"
    return found.group(1)


def test_the_run_now_button_pressed_twice_starts_one_run() -> None:
    user = make_user()
    client = _form_client(user)
    due = datetime.now(UTC) + timedelta(hours=1)
    order = services.order_create(user=user, definition=services.OrderDefinition(order_name="b", schedule_time=due))
    key = _button_key(client, order, "run-now")
    client.post(f"/orders/{order.pk}/run-now", {"idempotency_key": key})
    again = client.post(f"/orders/{order.pk}/run-now", {"idempotency_key": key}, follow=True)
    assert len(_manual_runs(order.pk)) == 1
    assert "had already been started by this button" in again.content.decode()


def test_the_schema_documents_the_run_now_and_retry_keys_without_a_422(alice_api: APIClient) -> None:
    schema = alice_api.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}).json()
    for action in ("run-now", "retry"):
        operation = schema["paths"][f"/api/orders/{{order_id}}/{action}/"]["post"]
        assert "Idempotency-Key" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "422" not in operation["responses"]
        assert "Idempotent-Replayed" in operation["responses"]["202"]["headers"]


def test_eight_run_nows_racing_with_one_key_start_one_run(alice: Any) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    order = services.order_create(user=alice, definition=services.OrderDefinition(order_name="r", schedule_time=due))
    path = f"/api/orders/{order.pk}/run-now"
    responses = _race(alice, lambda client: client.post(path, headers={"Idempotency-Key": "raced"}))
    assert [r.status_code for r in responses] == [202] * 8
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    assert len(_manual_runs(order.pk)) == 1
    assert [line["event"] for line in log_lines()].count("run_now_replayed") == 7


# --- retry ---------------------------------------------------------------------------------------------


def _with_two_failed_runs(user: Any) -> Order:
    due = datetime.now(UTC) + timedelta(hours=1)
    definition = services.OrderDefinition(
        order_name="flaky",
        schedule_time=due,
        is_recurring=True,
        repeat_interval=1,
        repeat_unit="hours",
        max_executions=9,
    )
    order = services.order_create(user=user, definition=definition)
    for occurrence in (1, 2):
        Execution.objects.create(
            order=order,
            occurrence=occurrence,
            kind=ExecutionKind.MANUAL,
            scheduled_for=due - timedelta(hours=2),
            status=ExecutionStatus.FAILED,
            attempts=1,
        )
    Order.objects.filter(pk=order.pk).update(occurrence_seq=2, executions_count=2)
    return order


def _retrying(order: Order) -> list[int]:
    return sorted(order.executions.filter(status=ExecutionStatus.RETRYING).values_list("occurrence", flat=True))


def test_a_repeated_retry_retries_one_run(alice: Any, alice_api: APIClient) -> None:
    order = _with_two_failed_runs(alice)
    path = f"/api/orders/{order.pk}/retry"
    first = alice_api.post(path, headers={"Idempotency-Key": "retry-1"})
    again = alice_api.post(path, headers={"Idempotency-Key": "retry-1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert _retrying(order) == [2], "the repeat retried the older failed run as well"
    # A new key (or none) is a new request: it retries the next failed run.
    assert alice_api.post(path, headers={"Idempotency-Key": "retry-2"}).status_code == 202
    assert _retrying(order) == [1, 2]
    assert [line["event"] for line in log_lines() if line["event"].startswith("retr")] == [
        "retried",
        "retry_replayed",
        "retried",
    ]


def test_a_repeated_retry_places_the_job_a_failed_commit_never_placed(alice: Any) -> None:
    order = _with_two_failed_runs(alice)
    execution, _ = services.order_retry_once(order=order, idempotency_key="retry-3")
    jobqueue.cancel(execution.job_id)
    again, replayed = services.order_retry_once(order=order, idempotency_key="retry-3")
    assert replayed and again.pk == execution.pk
    assert jobqueue.live_job_ids([again.job_id]) == {again.job_id}


def test_the_retry_button_pressed_twice_retries_one_run() -> None:
    user = make_user()
    client = _form_client(user)
    order = _with_two_failed_runs(user)
    key = _button_key(client, order, "retry")
    client.post(f"/orders/{order.pk}/retry", {"idempotency_key": key})
    again = client.post(f"/orders/{order.pk}/retry", {"idempotency_key": key}, follow=True)
    assert _retrying(order) == [2]
    assert "had already been retried by this button" in again.content.decode()
