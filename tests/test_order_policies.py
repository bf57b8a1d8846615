"""Per-order failure policy (pause_after_failures, the recovery notice) and overlap policy (wait, skip,
allow): the engine against the real database and Redis with a real RQ worker (in burst mode, or real
worker processes where runs must overlap), and the service's fields through the API, the pages and
the admin."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import time_machine
import yaml
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from orders import engine, services
from orders.executors import ExecutionContext, simulate_placement
from orders.models import Execution, Notification, Order
from tests.conftest import api_client_for, make_user
from tests.engine_helpers import log_lines, run_until, tick
from tests.processes import running_stack


def whole_second(offset: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=offset)).replace(microsecond=0)


def recurring(user: Any = None, **fields: Any) -> Order:
    fields.setdefault("order_name", "policy order")
    fields.setdefault("schedule_time", whole_second(1))
    fields.setdefault("is_recurring", True)
    fields.setdefault("repeat_interval", 1)
    fields.setdefault("repeat_unit", "seconds")
    return services.order_create(user=user or make_user(), definition=services.OrderDefinition(**fields))


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def executions(order: Order) -> list[Execution]:
    return list(Execution.objects.filter(order_id=order.pk).order_by("occurrence"))


def ran(order: Order) -> list[Execution]:
    return [e for e in executions(order) if e.status != "skipped"]


def notices(order: Order) -> list[tuple[str, str]]:
    return list(Notification.objects.filter(order_id=order.pk).order_by("id").values_list("kind", "message"))


def settle(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        time.sleep(0.1)


def fail_odd_runs(context: ExecutionContext) -> str:
    """ORDER_EXECUTOR for the streak tests: runs #1, #3, ... fail, #2, #4, ... succeed."""
    if context.occurrence % 2:
        raise RuntimeError(f"odd run {context.occurrence} failed")
    return simulate_placement(context)


# --- failure policy -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("resume_from", ["api", "page"])
def test_order_pauses_itself_after_n_failed_occurrences_in_a_row_and_resumes_as_usual(
    settings: Any, mailoutbox: list[Any], resume_from: str
) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 2
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 0.2
    owner = make_user("owner@example.com")
    # Every 2 s: each run's two attempts are over before the next run is due.
    order = recurring(owner, order_name="Nightly sync", repeat_interval=2, max_executions=20, pause_after_failures=2)

    run_until(lambda: reload(order).status == "paused", timeout=30)
    settle(2.5)  # a paused order runs nothing more
    paused = reload(order)
    assert paused.status == "paused" and paused.job_id == ""
    assert paused.executions_count == 2 and paused.consecutive_failures == 2
    assert [(e.status, e.attempts) for e in ran(order)] == [("failed", 2), ("failed", 2)]
    # The first failure is told as such; the second is the pause, with the last error.
    kinds = [kind for kind, _ in notices(order)]
    assert kinds == ["failed", "paused"]
    message = notices(order)[1][1]
    assert "paused after 2 failed run(s) in a row" in message
    assert f"simulated failure of order {order.pk}" in message
    assert any("paused after 2 failed" in m.subject for m in mailoutbox)
    (event,) = [e for e in log_lines() if e["event"] == "paused" and e["order_id"] == order.pk]
    assert event["reason"] == "failures" and event["consecutive_failures"] == 2

    # Fixed: resuming from the API or the page is the ordinary resume, and the next success ends the streak.
    settings.ORDER_EXECUTOR = "orders.executors.simulate_placement"
    client = api_client_for(owner)
    assert client.get(f"/api/orders/{order.pk}").json()["consecutive_failures"] == 2
    if resume_from == "api":
        assert client.post(f"/api/orders/{order.pk}/resume").json()["status"] in ("scheduled", "running")
    else:
        web = Client()
        web.force_login(owner)
        page = web.get(f"/orders/{order.pk}").content.decode()
        assert 'data-testid="order-consecutive-failures">2' in page and f"/orders/{order.pk}/resume" in page
        assert web.post(f"/orders/{order.pk}/resume").status_code == 302
        assert reload(order).status in ("scheduled", "running")
    run_until(lambda: any(e.status == "succeeded" for e in executions(order)), timeout=15)
    run_until(lambda: reload(order).consecutive_failures == 0, timeout=5)
    assert reload(order).status in ("scheduled", "running")
    assert notices(order)[-1] == (
        "recovered",
        "Order \u201cNightly sync\u201d recovered: succeeded again after 2 failed occurrence(s).",
    )
    assert client.get(f"/api/orders/{order.pk}").json()["consecutive_failures"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_success_resets_the_streak_so_alternating_failures_never_pause(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.test_order_policies.fail_odd_runs"
    settings.ORDER_MAX_ATTEMPTS = 1
    order = recurring(max_executions=4, pause_after_failures=2)
    run_until(lambda: reload(order).status == "completed", timeout=20)
    assert [e.status for e in ran(order)] == ["failed", "succeeded", "failed", "succeeded"]
    final = reload(order)
    assert final.consecutive_failures == 0 and final.executions_count == 4
    kinds = [kind for kind, _ in notices(order)]
    assert "paused" not in kinds
    assert kinds.count("recovered") == 2
    assert all("after 1 failed occurrence(s)" in m for k, m in notices(order) if k == "recovered")


@pytest.mark.django_db(transaction=True)
def test_without_pause_after_failures_a_failing_order_keeps_running(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 1
    order = recurring(max_executions=3)
    run_until(lambda: reload(order).status == "failed", timeout=20)
    assert reload(order).consecutive_failures == 3
    assert "paused" not in [kind for kind, _ in notices(order)]


@pytest.mark.django_db(transaction=True)
def test_the_last_failure_of_a_finished_order_does_not_pause_it(settings: Any) -> None:
    # Nothing left to run: the order ends failed (and says so) rather than paused.
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 1
    order = recurring(max_executions=2, pause_after_failures=2)
    run_until(lambda: reload(order).status == "failed", timeout=20)
    settle(1)
    assert reload(order).status == "failed"
    assert [kind for kind, _ in notices(order)] == ["failed", "failed"]


# --- overlap policy -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_skip_records_an_occurrence_due_while_the_previous_run_is_running_with_the_reason() -> None:
    order = recurring(max_executions=3, overlap_policy="skip")
    time.sleep(max(0.0, (order.schedule_time - timezone.now()).total_seconds()) + 0.05)
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=1)
    assert taken is not None  # run #1 is in progress ...
    time.sleep(1.1)
    tick()  # ... when slot 2 falls due
    rows = executions(order)
    assert [(e.grid_index, e.status) for e in rows[:2]] == [(1, "running"), (2, "skipped")]
    assert rows[1].skip_reason == "the previous run (#1) was still running"
    assert reload(order).executions_count == 1  # a skipped slot is not an execution
    assert reload(order).next_grid_index >= 3

    engine.execute(taken)
    run_until(lambda: reload(order).status == "completed", timeout=15)
    assert [e.status for e in ran(order)] == ["succeeded"] * 3
    skipped = [e for e in executions(order) if e.status == "skipped"]
    assert skipped and all(e.skip_reason.startswith("the previous run (#1)") for e in skipped)
    # The history says why, in the API and on the page.
    client = api_client_for(order.user)
    history = client.get(f"/api/orders/{order.pk}/executions").json()
    history = history.get("results", history) if isinstance(history, dict) else history
    assert any(e["status"] == "skipped" and e["skip_reason"] == skipped[0].skip_reason for e in history)
    page = Client()
    page.force_login(order.user)
    assert skipped[0].skip_reason in page.get(f"/orders/{order.pk}").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_misfire_skip_says_why_too() -> None:
    order = recurring(repeat_interval=60, max_executions=5, misfire_policy="skip")
    run_until(lambda: reload(order).executions_count == 1, timeout=10)
    with time_machine.travel(order.schedule_time + timedelta(seconds=185), tick=True):
        for _ in range(5):
            tick()
        skipped = [e for e in executions(order) if e.status == "skipped"]
    assert skipped and all(e.skip_reason == engine.MISFIRE_SKIP_REASON for e in skipped)


def _overlaps(runs: list[Execution]) -> list[bool]:
    result = []
    for before, after in pairwise(runs):
        assert before.finished_at is not None and after.started_at is not None
        result.append(after.started_at < before.finished_at)
    return result


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["allow", "skip"])
def test_overlap_policy_with_two_real_workers(tmp_path: Path, policy: str) -> None:
    # Each run takes 1.5 s but the order is due every second, with two real workers competing
    # (tests/test_engine.py's test_two_runs_of_one_order_never_overlap is the "wait" case).
    with running_stack(
        tmp_path, web=False, workers=2, ORDER_EXECUTOR="tests.faults.executors.slow", ORDER_SLOW_EXECUTOR_SECONDS="1.5"
    ):
        order = recurring(max_executions=3, overlap_policy=policy, schedule_time=whole_second(3))
        deadline = time.monotonic() + 60
        while reload(order).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert reload(order).status == "completed"
    runs = ran(order)
    assert [r.status for r in runs] == ["succeeded"] * 3
    skipped = [e for e in executions(order) if e.status == "skipped"]
    if policy == "allow":
        # Each run starts on its own grid slot, while the one before is still going.
        assert all(_overlaps(runs))
        assert [r.grid_index for r in runs] == [1, 2, 3] and not skipped
        for k, run in enumerate(runs):
            assert run.started_at is not None
            assert run.started_at - (order.schedule_time + timedelta(seconds=k)) < timedelta(seconds=1)
    else:
        assert not any(_overlaps(runs))
        assert skipped and all("was still running" in e.skip_reason for e in skipped)
        # Every slot either ran or was skipped, once.
        slots = sorted(e.grid_index or 0 for e in executions(order))
        assert slots == list(range(1, len(slots) + 1))


# --- the service, through the API -----------------------------------------------------------------------


def _create(client: APIClient, headers: dict[str, str] | None = None, **fields: Any) -> Any:
    body = {
        "order_name": "policies",
        "schedule_time": (timezone.now() + timedelta(hours=1)).isoformat(),
        "is_recurring": True,
        "repeat_interval": 1,
        "repeat_unit": "hours",
        **fields,
    }
    return client.post("/api/orders/", body, format="json", headers=headers)


@pytest.mark.django_db
def test_api_round_trip_of_both_policies(alice_api: APIClient) -> None:
    created = _create(alice_api, overlap_policy="skip", pause_after_failures=3)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["overlap_policy"], body["pause_after_failures"], body["consecutive_failures"]) == ("skip", 3, 0)
    order_id = body["order_id"]
    assert alice_api.get(f"/api/orders/{order_id}").json()["overlap_policy"] == "skip"
    listed = alice_api.get("/api/orders/").json()["results"][0]
    assert (listed["overlap_policy"], listed["pause_after_failures"]) == ("skip", 3)

    changed = alice_api.patch(
        f"/api/orders/{order_id}", {"overlap_policy": "allow", "pause_after_failures": None}, format="json"
    )
    assert changed.status_code == 200
    assert (changed.json()["overlap_policy"], changed.json()["pause_after_failures"]) == ("allow", None)
    order = Order.objects.get(pk=order_id)
    assert (order.overlap_policy, order.pause_after_failures) == ("allow", None)
    # Not a schedule change: the pending job stays.
    assert changed.json()["job_id"] == body["job_id"]


@pytest.mark.django_db
def test_a_create_key_reused_with_other_policies_is_refused(alice_api: APIClient) -> None:
    when = (timezone.now() + timedelta(hours=1)).isoformat()
    first = _create(alice_api, schedule_time=when, pause_after_failures=3, headers={"Idempotency-Key": "k-1"})
    again = _create(alice_api, schedule_time=when, pause_after_failures=3, headers={"Idempotency-Key": "k-1"})
    other = _create(alice_api, schedule_time=when, overlap_policy="allow", headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json()["order_id"] == first.json()["order_id"]


@pytest.mark.django_db
def test_api_defaults_are_todays_behaviour(alice_api: APIClient) -> None:
    body = _create(alice_api).json()
    assert (body["overlap_policy"], body["pause_after_failures"]) == ("wait", None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pause_after_failures": 0}, "pause_after_failures"),
        ({"pause_after_failures": -2}, "pause_after_failures"),
        ({"pause_after_failures": "three"}, "pause_after_failures"),
        ({"pause_after_failures": True}, "pause_after_failures"),
        ({"pause_after_failures": 1001}, "pause_after_failures"),
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
        ({"overlap_policy": "SKIP"}, "overlap_policy"),
        ({"overlap_policy": None}, "overlap_policy"),
    ],
)
def test_api_refuses_bad_policies_with_a_field_error(
    alice: Any, alice_api: APIClient, fields: dict[str, Any], field: str
) -> None:
    response = _create(alice_api, **fields)
    assert response.status_code == 400
    assert list(response.json()) == [field] and response.json()[field]
    assert not Order.objects.filter(user=alice).exists()
    order_id = _create(alice_api).json()["order_id"]
    patched = alice_api.patch(f"/api/orders/{order_id}", fields, format="json")
    assert patched.status_code == 400 and field in patched.json()


@pytest.mark.django_db
def test_api_reports_a_bad_policy_together_with_the_other_errors(alice_api: APIClient) -> None:
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    response = _create(
        alice_api, pause_after_failures=0, overlap_policy="never", schedule_time=past, is_recurring=False
    )
    assert response.status_code == 400
    assert {"pause_after_failures", "overlap_policy", "schedule_time"} <= set(response.json())


@pytest.mark.django_db
def test_service_refuses_bad_policies() -> None:
    definition = services.OrderDefinition(
        order_name="x", schedule_time=timezone.now() + timedelta(hours=1), pause_after_failures=0, overlap_policy="x"
    )
    with pytest.raises(ValidationError) as caught:
        services.order_create(user=make_user(), definition=definition)
    assert set(caught.value.message_dict) == {"pause_after_failures", "overlap_policy"}


@pytest.mark.django_db
def test_openapi_schema_documents_both_policies() -> None:
    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    components = schema["components"]["schemas"]
    write = components["OrderWriteRequest"]["properties"] if "OrderWriteRequest" in components else None
    write = write or components["OrderWrite"]["properties"]
    assert write["pause_after_failures"]["minimum"] == 1 and write["pause_after_failures"]["nullable"] is True
    assert "pause the order" in write["pause_after_failures"]["description"].lower()
    overlap = write["overlap_policy"]
    enum_ref = overlap.get("$ref") or overlap["allOf"][0]["$ref"]
    assert components[enum_ref.rsplit("/", 1)[-1]]["enum"] == ["wait", "skip", "allow"]
    read = components["Order"]["properties"]
    assert {"overlap_policy", "pause_after_failures", "consecutive_failures"} <= set(read)
    assert "skip_reason" in components["Execution"]["properties"]


# --- the pages and the admin ---------------------------------------------------------------------------


def _form(**overrides: Any) -> dict[str, Any]:
    wall = (timezone.now() + timedelta(hours=2)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "order_name": "from the form",
        "kind": "recurring",
        "schedule_time": wall,
        "time_zone": "UTC",
        "repeat_kind": "interval",
        "repeat_interval": "1",
        "repeat_unit": "hours",
        "unlimited": "on",
        "max_executions": "",
        "misfire_policy": "run_once",
        **overrides,
    }


@pytest.mark.django_db
def test_the_form_sets_both_policies_and_the_order_page_shows_them(alice: Any) -> None:
    web = Client()
    web.force_login(alice)
    html = web.get("/orders/new").content.decode()
    assert 'name="overlap_policy"' in html and 'name="pause_after_failures"' in html

    response = web.post("/orders/new", _form(overlap_policy="skip", pause_after_failures="3"))
    assert response.status_code == 302
    order = Order.objects.get(user=alice)
    assert (order.overlap_policy, order.pause_after_failures) == ("skip", 3)
    page = web.get(f"/orders/{order.pk}").content.decode()
    assert "Skip the run (recorded as skipped)" in page and "3 in a row" in page

    edit = web.get(f"/orders/{order.pk}/edit").content.decode()
    assert '<option value="skip" selected>' in edit and 'value="3"' in edit
    assert (
        web.post(f"/orders/{order.pk}/edit", _form(overlap_policy="allow", pause_after_failures="")).status_code == 302
    )
    order.refresh_from_db()
    assert (order.overlap_policy, order.pause_after_failures) == ("allow", None)
    assert "Never" in web.get(f"/orders/{order.pk}").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pause_after_failures": "0"}, "pause_after_failures"),
        ({"pause_after_failures": "many"}, "pause_after_failures"),
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
    ],
)
def test_the_form_shows_a_bad_policy_beside_its_field(alice: Any, overrides: dict[str, str], field: str) -> None:
    web = Client()
    web.force_login(alice)
    response = web.post("/orders/new", _form(**overrides))
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Order.objects.filter(user=alice).exists()


@pytest.mark.django_db
def test_the_admin_changes_the_policies_through_the_service(alice: Any) -> None:
    User.objects.create_superuser(email="root@example.com", password="root-password-123")
    admin = Client()
    assert admin.login(username="root@example.com", password="root-password-123")
    order = services.order_create(
        user=alice,
        definition=services.OrderDefinition(order_name="x", schedule_time=timezone.now() + timedelta(hours=1)),
    )
    url = f"/admin/orders/order/{order.pk}/change/"
    assert 'name="pause_after_failures"' in admin.get(url).content.decode()
    # What the change page sends besides the two fields: the (empty, read-only) executions inline.
    inline = {"executions-TOTAL_FORMS": "0", "executions-INITIAL_FORMS": "0"}
    refused = admin.post(url, {**inline, "overlap_policy": "skip", "pause_after_failures": "0"})
    assert refused.status_code == 200 and "pause_after_failures" in refused.context["adminform"].form.errors
    saved = admin.post(url, {**inline, "overlap_policy": "skip", "pause_after_failures": "4"})
    assert saved.status_code == 302
    order.refresh_from_db()
    assert (order.overlap_policy, order.pause_after_failures, order.job_id != "") == ("skip", 4, True)
