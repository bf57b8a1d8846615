"""Orders with a target_url: validation at create/update, delivery by the engine (real rq-scheduler
enqueue step, real SimpleWorker in burst mode), retries by the receiver's answer, history, the test
delivery, and the pages. Receivers are real HTTP servers on 127.0.0.1 (allowlisted)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from orders import jobqueue, services
from orders.models import Execution, ExecutionStatus, Order, OrderStatus
from tests.engine_helpers import enqueue_due, log_lines, run_until, work
from tests.webhooks.conftest import ConnectionGuard
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def due_in(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0) + timedelta(seconds=1)


def wait_past(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.05)


def create(api: APIClient, **body: Any) -> Any:
    body = {"order_name": "hook", "schedule_time": due_in(1).isoformat(), **body}
    return api.post("/api/orders", body, format="json")


def run_due(order_ids: list[int], timeout: float = 20) -> None:
    run_until(
        lambda: (
            Execution.objects.filter(order_id__in=order_ids, status=ExecutionStatus.SUCCEEDED).count()
            + Execution.objects.filter(order_id__in=order_ids, status=ExecutionStatus.FAILED).count()
            >= len(order_ids)
        ),
        timeout=timeout,
    )


# --- validation -----------------------------------------------------------------------------------------


def test_target_and_payload_are_saved_and_shown(alice_api: APIClient) -> None:
    response = create(alice_api, target_url="http://127.0.0.1:9999/hook", payload={"sku": "A-100", "qty": 3})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["target_url"] == "http://127.0.0.1:9999/hook" and body["payload"] == {"sku": "A-100", "qty": 3}
    listed = alice_api.get("/api/orders").json()["results"][0]
    assert listed["target_url"] == body["target_url"] and listed["payload"] == body["payload"]
    assert alice_api.get(f"/api/orders/{body['order_id']}").json()["payload"] == {"sku": "A-100", "qty": 3}


def test_an_order_without_a_target_has_empty_webhook_fields(alice_api: APIClient) -> None:
    body = create(alice_api).json()
    assert body["target_url"] == "" and body["payload"] is None


@pytest.mark.parametrize(
    ("target_url", "message"),
    [
        ("http://10.0.0.1/hook", "must use https"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:169.254.169.254]/", "link-local"),
        ("https://[fd00::1]/", "private"),
        ("https://127.0.0.2/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://2130706433/", "four decimal numbers"),
        ("https://0x7f000001/", "four decimal numbers"),
        ("https://0177.0.0.1/", "four decimal numbers"),
        ("https://user:pw@127.0.0.1/", "user name or password"),
        ("https://hooks.example.com:22/", "Ports below 1024"),
        ("ftp://hooks.example.com/", "must start with https"),
        ("https://hooks.example.com/", "does not resolve"),  # no DNS in tests: as if the name did not exist
        ("not a url", "spaces"),
    ],
)
def test_refused_targets_are_a_400_on_target_url_and_nothing_is_made(
    alice_api: APIClient, connections: ConnectionGuard, target_url: str, message: str
) -> None:
    response = create(alice_api, target_url=target_url)
    assert response.status_code == 400, response.json()
    assert set(response.json()) == {"target_url"}
    assert message in response.json()["target_url"][0]
    assert not Order.objects.exists()
    assert connections.outside_loopback() == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], "JSON object"),
        ("text", "JSON object"),
        (42, "JSON object"),
        ({"blob": "x" * 16_400}, "larger than 16 kB"),
    ],
)
def test_a_bad_payload_is_a_400_on_payload(alice_api: APIClient, payload: Any, message: str) -> None:
    response = create(alice_api, target_url="http://127.0.0.1:9999/", payload=payload)
    assert response.status_code == 400
    assert message in response.json()["payload"][0]


def test_a_payload_of_exactly_16_kB_is_accepted(alice_api: APIClient) -> None:
    filler = 16 * 1024 - len('{"blob":""}')
    assert create(alice_api, payload={"blob": "x" * filler}).status_code == 201


def test_both_field_errors_come_together_with_the_others(alice_api: APIClient) -> None:
    # The serializer's field errors come first (a payload that is not an object is one of them)...
    shape = create(alice_api, order_name=" ", target_url="https://10.0.0.1/", payload=[1])
    assert shape.status_code == 400 and {"order_name", "payload"} <= set(shape.json())
    # ...and the services' rules are reported together: the target's policy and the schedule's.
    rules = create(alice_api, schedule_time="2001-01-01T00:00:00Z", target_url="https://10.0.0.1/")
    assert rules.status_code == 400 and {"schedule_time", "target_url"} <= set(rules.json())


def test_update_checks_a_new_target_and_can_remove_it(alice_api: APIClient) -> None:
    order_id = create(alice_api, target_url="http://127.0.0.1:9999/").json()["order_id"]
    refused = alice_api.patch(f"/api/orders/{order_id}", {"target_url": "https://192.168.0.10/"}, format="json")
    assert refused.status_code == 400 and "private" in refused.json()["target_url"][0]
    assert Order.objects.get(pk=order_id).target_url == "http://127.0.0.1:9999/"
    cleared = alice_api.patch(f"/api/orders/{order_id}", {"target_url": "", "payload": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["target_url"] == ""


def test_http_is_only_for_allowlisted_hosts(alice_api: APIClient, settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = create(alice_api, target_url="http://127.0.0.1:9999/")
    assert response.status_code == 400 and "https" in response.json()["target_url"][0]


# --- delivery by the engine ---------------------------------------------------------------------------


def test_an_execution_posts_a_message_signed_with_the_secret_from_the_api(
    alice_api: APIClient, receiver: Receiver
) -> None:
    secret = alice_api.post("/api/account/webhook-secret").json()["secret"]
    order = create(alice_api, target_url=receiver.url("/ok"), payload={"sku": "A-100"}).json()
    run_due([order["order_id"]])
    [request] = receiver.requests
    event = Webhook(secret).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == f"order-{order['order_id']}-occurrence-1"
    assert event["type"] == "order.execution"
    data = event["data"]
    assert data["order_id"] == order["order_id"] and data["order_name"] == "hook"
    assert (data["occurrence"], data["attempt"]) == (1, 1)
    assert data["idempotency_key"] == request.headers["webhook-id"]
    assert data["payload"] == {"sku": "A-100"}
    assert datetime.fromisoformat(data["scheduled_for"]) == datetime.fromisoformat(order["schedule_time"])

    [execution] = alice_api.get(f"/api/orders/{order['order_id']}/executions").json()["results"]
    assert execution["status"] == "succeeded" and execution["result_ref"] == "HTTP 200"
    delivery = execution["delivery"]
    assert delivery["status_code"] == 200 and delivery["response_excerpt"] == "ok"
    assert delivery["latency_ms"] >= 0 and delivery["address"] == "127.0.0.1"
    assert execution["attempt_history"][0]["delivery"] == delivery
    [line] = [e for e in log_lines() if e["event"] == "succeeded"]
    assert line["status_code"] == 200 and "latency_ms" in line


def test_an_order_without_a_target_is_simulated_as_before(alice_api: APIClient, connections: ConnectionGuard) -> None:
    order = create(alice_api).json()
    run_due([order["order_id"]])
    execution = Execution.objects.get(order_id=order["order_id"])
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.result_ref == f"PL-{order['order_id']}-1" and execution.latest_delivery is None
    assert all(port != 9999 for _, port in connections.attempts)


def test_503_with_retry_after_is_retried_after_that_delay(
    alice_api: APIClient, receiver: Receiver, settings: Any
) -> None:
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 1
    order = create(alice_api, target_url=receiver.url("/status/503?retry_after=7")).json()
    run_until(lambda: Execution.objects.filter(order_id=order["order_id"], status="retrying").exists())
    execution = Execution.objects.get(order_id=order["order_id"])
    delivery = execution.latest_delivery
    assert execution.attempts == 1 and delivery is not None
    assert delivery["status_code"] == 503 and delivery["retry_after_seconds"] == 7
    [retried] = [e for e in log_lines() if e["event"] == "retried"]
    assert retried["retry_in_seconds"] == 7
    [failed] = [e for e in log_lines() if e["event"] == "failed"]
    assert failed["status_code"] == 503
    # The retry job sits in rq-scheduler for Retry-After seconds, not the 1 s backoff.
    when = jobqueue.scheduler().connection.zscore("rq:scheduler:scheduled_jobs", execution.job_id)
    assert when is not None and when - time.time() > 4


def test_a_400_fails_the_occurrence_at_once_without_retries(alice_api: APIClient, receiver: Receiver) -> None:
    order = create(alice_api, target_url=receiver.url("/status/400")).json()
    run_due([order["order_id"]])
    execution = Execution.objects.get(order_id=order["order_id"])
    assert (execution.status, execution.attempts) == (ExecutionStatus.FAILED, 1)
    assert execution.error.startswith("HTTP 400")
    assert len(receiver.requests) == 1
    assert Order.objects.get(pk=order["order_id"]).status == OrderStatus.FAILED
    assert not [e for e in log_lines() if e["event"] == "retried"]


def test_a_redirect_fails_at_once_and_is_not_followed(alice_api: APIClient, receiver: Receiver) -> None:
    order = create(alice_api, target_url=receiver.url("/status/307?location=/ok")).json()
    run_due([order["order_id"]])
    execution = Execution.objects.get(order_id=order["order_id"])
    assert (execution.status, execution.attempts) == (ExecutionStatus.FAILED, 1)
    assert [r.path for r in receiver.requests] == ["/status/307"]


def test_a_timeout_is_a_failed_attempt_that_is_retried(alice_api: APIClient, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 60
    order = create(alice_api, target_url=receiver.url("/sleep/3")).json()
    run_until(lambda: Execution.objects.filter(order_id=order["order_id"], status="retrying").exists())
    execution = Execution.objects.get(order_id=order["order_id"])
    history = execution.attempt_history[0]
    assert history["status"] == "failed" and history["error"].startswith("Timeout")
    assert history["delivery"]["status_code"] is None and history["delivery"]["outcome"] == "retryable"


def test_flaky_receiver_succeeds_on_the_retry_with_the_same_webhook_id(
    alice_api: APIClient, receiver: Receiver, settings: Any
) -> None:
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 0.2
    order = create(alice_api, target_url=receiver.url("/flaky/1")).json()
    run_until(lambda: Execution.objects.filter(order_id=order["order_id"], status="succeeded").exists())
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids == [f"order-{order['order_id']}-occurrence-1"] * 2
    assert [json.loads(r.body)["data"]["attempt"] for r in receiver.requests] == [1, 2]
    execution = Execution.objects.get(order_id=order["order_id"])
    assert [h["delivery"]["status_code"] for h in execution.attempt_history] == [503, 200]


def test_a_target_refused_at_delivery_time_fails_without_a_connection(
    alice_api: APIClient, settings: Any, connections: ConnectionGuard
) -> None:
    order = create(alice_api, target_url="http://127.0.0.1:9999/").json()
    # The operator removes the host from the allowlist before the run (or DNS changed meanwhile).
    settings.WEBHOOK_ALLOWED_HOSTS = []
    run_due([order["order_id"]])
    execution = Execution.objects.get(order_id=order["order_id"])
    assert (execution.status, execution.attempts) == (ExecutionStatus.FAILED, 1)
    assert execution.error.startswith("Refused")
    assert ("127.0.0.1", 9999) not in connections.attempts


def test_an_unreadable_secret_fails_only_its_owners_deliveries_in_a_batch(
    alice: Any, bob: Any, receiver: Receiver, settings: Any
) -> None:
    from webhooks.services import signing_secret_rotate

    settings.WEBHOOK_SECRETS_KEYS = ["a key since replaced"]
    signing_secret_rotate(user_id=alice.pk)
    settings.WEBHOOK_SECRETS_KEYS = ["the key now"]
    at = due_in(1)
    for owner in (alice, bob):
        services.order_create(
            user=owner,
            definition=services.OrderDefinition(order_name="batch", schedule_time=at, target_url=receiver.url("/ok")),
        )
    wait_past(at)
    enqueue_due()
    work()
    by_owner = {e.order.user_id: e for e in Execution.objects.select_related("order")}
    assert by_owner[bob.pk].status == ExecutionStatus.SUCCEEDED
    assert by_owner[alice.pk].status == ExecutionStatus.FAILED and by_owner[alice.pk].attempts == 1
    assert "signing secret cannot be read" in by_owner[alice.pk].error
    assert len(receiver.requests) == 1


def test_a_batch_sends_its_deliveries_concurrently(alice_api: APIClient, receiver: Receiver, settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    at = due_in(1)
    ids = [
        create(
            alice_api, order_name=f"slow {i}", schedule_time=at.isoformat(), target_url=receiver.url("/sleep/0.5")
        ).json()["order_id"]
        for i in range(20)
    ]
    wait_past(at)
    enqueue_due()
    started = time.monotonic()
    work()
    elapsed = time.monotonic() - started
    assert Execution.objects.filter(order_id__in=ids, status=ExecutionStatus.SUCCEEDED).count() == 20
    # One after the other the 20 answers would take 10 s; the receiver saw them wait together.
    assert receiver.state.max_in_flight >= 10
    assert elapsed < 8, elapsed
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(f"order-{i}-occurrence-1" for i in ids)


# --- test delivery --------------------------------------------------------------------------------------


def test_a_test_delivery_is_signed_shown_and_not_an_execution(alice_api: APIClient, receiver: Receiver) -> None:
    secret = alice_api.post("/api/account/webhook-secret").json()["secret"]
    order = create(
        alice_api, schedule_time=due_in(3600).isoformat(), target_url=receiver.url("/ok"), payload={"a": 1}
    ).json()
    response = alice_api.post(f"/api/orders/{order['order_id']}/test-delivery")
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "succeeded" and body["status_code"] == 200 and body["response_excerpt"] == "ok"
    assert body["webhook_id"].startswith(f"test-{order['order_id']}-")
    [request] = receiver.requests
    event = Webhook(secret).verify(request.body, request.headers)
    assert event["type"] == "order.test" and event["data"]["payload"] == {"a": 1}
    assert not Execution.objects.exists()
    assert Order.objects.get(pk=order["order_id"]).executions_count == 0
    [line] = [e for e in log_lines() if e["event"] == "test_delivery"]
    assert line["status_code"] == 200


def test_a_test_delivery_reports_the_receivers_refusal(alice_api: APIClient, receiver: Receiver) -> None:
    order = create(alice_api, schedule_time=due_in(3600).isoformat(), target_url=receiver.url("/status/404")).json()
    body = alice_api.post(f"/api/orders/{order['order_id']}/test-delivery").json()
    assert body["outcome"] == "failed" and body["status_code"] == 404


def test_a_test_delivery_needs_a_target_and_an_owner(alice_api: APIClient, bob_api: APIClient) -> None:
    order = create(alice_api, schedule_time=due_in(3600).isoformat()).json()
    response = alice_api.post(f"/api/orders/{order['order_id']}/test-delivery")
    assert response.status_code == 400 and "no target URL" in response.json()["target_url"][0]
    assert bob_api.post(f"/api/orders/{order['order_id']}/test-delivery").status_code == 404


# --- pages ----------------------------------------------------------------------------------------------


def _form(**fields: Any) -> dict[str, Any]:
    at = due_in(3600).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "order_name": "from the page",
        "kind": "once",
        "schedule_time": at,
        "time_zone": "UTC",
        "misfire_policy": "run_once",
        "repeat_unit": "days",
        **fields,
    }


def test_the_form_takes_a_target_and_a_json_payload(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.post("/orders/new", _form(target_url="http://127.0.0.1:9999/in", payload='{"sku": "A-100"}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    order = Order.objects.get()
    assert order.target_url == "http://127.0.0.1:9999/in" and order.payload == {"sku": "A-100"}
    page = client.get(f"/orders/{order.pk}").content.decode()
    assert "http://127.0.0.1:9999/in" in page and "Send test delivery" in page and "A-100" in page
    edit = client.get(f"/orders/{order.pk}/edit").content.decode()
    assert "A-100" in edit and "http://127.0.0.1:9999/in" in edit


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"payload": "{not json"}, "payload", "Enter valid JSON"),
        ({"payload": "[1, 2]"}, "payload", "JSON object"),
        ({"payload": '{"a": NaN}'}, "payload", "Enter valid JSON"),
        ({"target_url": "https://169.254.169.254/"}, "target_url", "link-local"),
    ],
)
def test_the_form_shows_webhook_errors_next_to_the_field(
    client: Client, alice: Any, fields: dict[str, str], field: str, message: str
) -> None:
    client.force_login(alice)
    response = client.post("/orders/new", _form(**fields))
    assert response.status_code == 400 or response.status_code == 200
    assert message in response.content.decode()
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Order.objects.exists()


def test_the_page_button_sends_a_test_delivery_and_shows_the_response_as_text(
    client: Client, alice: Any, receiver: Receiver
) -> None:
    client.force_login(alice)
    order = services.order_create(
        user=alice,
        definition=services.OrderDefinition(
            order_name="page test", schedule_time=due_in(3600), target_url=receiver.url("/status/500")
        ),
    )
    page = client.post(f"/orders/{order.pk}/test-delivery").content.decode()
    assert 'data-testid="test-delivery-status">500<' in page
    assert "status 500" in page
    assert not Execution.objects.exists()


def test_a_response_body_is_never_rendered_as_html(alice: Any, client: Client) -> None:
    client.force_login(alice)
    order = services.order_create(
        user=alice,
        definition=services.OrderDefinition(
            order_name="x", schedule_time=due_in(3600), target_url="http://127.0.0.1:9999/"
        ),
    )
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    Execution.objects.create(
        order=order,
        occurrence=1,
        scheduled_for=order.schedule_time,
        status="failed",
        attempt_history=[
            {
                "attempt": 1,
                "status": "failed",
                "error": "",
                "delivery": {"status_code": 500, "latency_ms": 3, "response_excerpt": hostile},
            }
        ],
    )
    page = client.get(f"/orders/{order.pk}").content.decode()
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_test_deliveries_are_rate_limited_per_user(alice_api: APIClient, bob_api: APIClient) -> None:
    order = create(alice_api, schedule_time=due_in(3600).isoformat()).json()
    url = f"/api/orders/{order['order_id']}/test-delivery"
    assert {alice_api.post(url).status_code for _ in range(20)} == {400}
    limited = alice_api.post(url)
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    # Another user's budget is their own.
    assert bob_api.post(url).status_code == 404
