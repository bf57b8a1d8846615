"""What one API request costs in round trips: SQL statements (Django's CaptureQueriesContext) and
Redis commands (a real MONITOR on the test Redis, so every client of the process is seen).

Authentication reads no row, a create writes one INSERT that already carries its job id, a list is a
page and a count (issue 17)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.auth_state import user_state_key
from accounts.models import User
from accounts.selectors import user_get_by_id
from accounts.services import user_logout_all
from orders import jobqueue
from orders.models import Order, OrderStatus
from tests.accounts.helpers import bearer, login
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)

_START, _END = "query-count-start", "query-count-end"


@contextmanager
def redis_commands() -> Iterator[list[str]]:
    """The Redis commands (names, upper case) sent to the test's Redis database by anyone while the
    block runs, read from MONITOR (which sees every database of the server: others are left out)."""
    monitor_client = redis.Redis.from_url(settings.REDIS_URL)
    database = int(monitor_client.connection_pool.connection_kwargs.get("db", 0))
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            recording = False
            for event in monitor.listen():
                if int(event["db"]) != database:
                    continue
                command = str(event["command"])
                if _START in command:
                    recording = True
                elif _END in command:
                    return
                elif recording:
                    seen.append(command.split(" ", 1)[0].upper())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    marker = redis.Redis.from_url(settings.REDIS_URL)
    marker.echo(_START)
    try:
        yield seen
    finally:
        marker.echo(_END)
        watcher.join(5)
        assert not watcher.is_alive(), "MONITOR never saw the end marker"


@contextmanager
def redis_round_trips() -> Iterator[list[int]]:
    """How many times a Redis connection sent something from this thread (a pipeline sends once).
    Other threads are left out: the metrics flusher writes its counts every METRICS_FLUSH_SECONDS
    from a thread of its own, and a flush that fell inside a request was counted as the request's."""
    sent: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command
    mine = threading.get_ident()

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == mine:
            sent.append(1)
        original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def _sql(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


def test_an_authenticated_request_reads_no_row_and_makes_one_redis_round_trip() -> None:
    user = make_user()
    client = bearer(login(user.email)["access"])
    assert client.get("/api/auth/me").status_code == 200  # the first request may read the row once

    with CaptureQueriesContext(connection) as queries, redis_commands() as commands:
        response = client.get("/api/auth/me")

    assert response.status_code == 200 and response.json()["email"] == user.email
    assert _sql(queries) == []
    assert commands == ["MGET"]


def test_logout_all_is_seen_by_the_next_request_without_a_database_read() -> None:
    user = make_user()
    device = login(user.email)
    assert bearer(device["access"]).get("/api/auth/me").status_code == 200

    user_logout_all(user=user)

    with CaptureQueriesContext(connection) as queries:
        refused = bearer(device["access"]).get("/api/auth/me")
    assert refused.status_code == 401
    assert _sql(queries) == []


def test_a_reader_holding_the_row_from_before_a_logout_all_cannot_put_it_back() -> None:
    """The copy is only ever added (SET NX) by a reader: a save's own write wins over an older read."""
    user = make_user()
    device = login(user.email)
    before = user_get_by_id(user.pk)  # a request that read the row just before the change

    user_logout_all(user=user)
    assert cache.add(user_state_key(user.pk), before) is False
    assert bearer(device["access"]).get("/api/auth/me").status_code == 401


def test_a_missing_copy_is_read_from_the_database_not_trusted() -> None:
    user = make_user()
    client = api_client_for(user)
    assert client.get("/api/auth/me").status_code == 200
    cache.delete(user_state_key(user.pk))
    type(user).objects.filter(pk=user.pk).update(is_active=False)  # behind the copy's back, then no copy

    response = client.get("/api/auth/me")
    assert response.status_code == 401


# --- create -------------------------------------------------------------------------------------


def _payload(**overrides: Any) -> dict[str, Any]:
    return {"order_name": "restock", "schedule_time": (timezone.now() + timedelta(hours=1)).isoformat(), **overrides}


def _signed_in_client(user: Any) -> Any:
    client = api_client_for(user)
    assert client.get("/api/auth/me").status_code == 200  # the user's copy is in Redis from here on
    return client


def _statements(sql: list[str]) -> list[str]:
    """The statements that are work, not transaction control (SQLite's BEGIN, savepoints)."""
    return [q for q in sql if not q.upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT"))]


def test_a_create_is_one_insert_carrying_its_job_id_and_its_cap() -> None:
    client = _signed_in_client(make_user())

    with redis_commands() as commands, redis_round_trips() as trips, CaptureQueriesContext(connection) as queries:
        response = client.post("/api/orders/", _payload(), format="json")

    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    statements = _statements(_sql(queries))
    # The cap is the INSERT's trigger's: no locked read of the counter before it.
    assert len(statements) == 1 and statements[0].upper().startswith("INSERT"), statements
    assert order.job_id in statements[0]
    # The cap was asked of the trigger, and is not stored: a dumped and reloaded row is not held to it.
    assert order.active_cap is None and f", {settings.ORDER_MAX_ACTIVE_PER_USER}, " in statements[0]
    # The request's Redis: authentication's MGET, then the job written in one pipeline after the INSERT.
    assert len(trips) == 2, commands
    assert commands[0] == "MGET" and "ZADD" in commands
    # The job's hash (rq's fields and the hand-off mark) in one HSET, then its entry in the schedule.
    assert [c for c in commands if c in {"HSET", "ZADD"}] == ["HSET", "ZADD"], commands
    assert jobqueue.order_id_of_job(order.job_id) == order.pk
    assert order.job_id in jobqueue.all_order_job_ids()


def _statements_sent() -> int:
    """MariaDB's count of the statements this connection sent (Questions: transaction control and
    autocommit switches included, a trigger's own statements not), less the SHOW that reads it."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


@pytest.mark.mysql(reason="counts the statements MariaDB received")
def test_a_create_sends_mariadb_one_statement_and_no_transaction() -> None:
    client = _signed_in_client(make_user())
    client.post("/api/orders/", _payload(), format="json")  # a first request opens the connection
    first_read = _statements_sent()
    idle = _statements_sent() - first_read  # what reading the count costs

    before = _statements_sent()
    response = client.post("/api/orders/", _payload(), format="json")
    sent = _statements_sent() - before - idle

    assert response.status_code == 201, response.content
    # A transaction would add SET autocommit=0, COMMIT and SET autocommit=1.
    assert sent == 1


def test_a_refused_create_inside_a_callers_transaction_keeps_the_callers_work(settings: Any) -> None:
    """The INSERT runs in a savepoint there: the cap's refusal undoes the INSERT, not the caller's
    earlier writes, and the caller's transaction goes on."""
    from django.core.exceptions import ValidationError
    from django.db import transaction

    from orders import services

    settings.ORDER_MAX_ACTIVE_PER_USER = 1
    user = make_user()
    due = timezone.now() + timedelta(hours=1)
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(time_zone="Europe/Berlin")
        services.order_create(user=user, definition=services.OrderDefinition(order_name="a", schedule_time=due))
        with pytest.raises(ValidationError):
            services.order_create(user=user, definition=services.OrderDefinition(order_name="b", schedule_time=due))
        services.order_update(order=Order.objects.get(user=user), changes={"order_name": "a, renamed"})
    assert User.objects.get(pk=user.pk).time_zone == "Europe/Berlin"
    assert list(Order.objects.filter(user=user).values_list("order_name", flat=True)) == ["a, renamed"]


def test_a_create_for_a_user_that_is_gone_is_the_foreign_keys_error_not_the_caps() -> None:
    from django.db import IntegrityError

    from orders import services

    gone = make_user()
    User.objects.filter(pk=gone.pk).delete()
    due = timezone.now() + timedelta(hours=1)
    with pytest.raises(IntegrityError):
        services.order_create(user=gone, definition=services.OrderDefinition(order_name="o", schedule_time=due))


def test_the_counter_follows_every_way_an_order_becomes_active(settings: Any) -> None:
    user = make_user()
    client = _signed_in_client(user)
    first = client.post("/api/orders/", _payload(), format="json").json()["order_id"]
    Order.objects.create(user=user, order_name="made by hand", schedule_time=timezone.now(), status="scheduled")
    Order.objects.create(user=user, order_name="done", schedule_time=timezone.now(), status="completed")
    assert User.objects.get(pk=user.pk).active_orders == 2
    Order.objects.filter(order_name="done").update(status=OrderStatus.SCHEDULED)  # behind every service's back
    assert User.objects.get(pk=user.pk).active_orders == 3
    # Finishing subtracts nothing (a worker takes no user locks); the count stays an upper bound.
    Order.objects.filter(pk=first).update(status=OrderStatus.COMPLETED)
    assert User.objects.get(pk=user.pk).active_orders == 3
    # Deleting an active order gives its place back; deleting a finished one changes nothing.
    Order.objects.filter(order_name="made by hand").delete()
    Order.objects.filter(pk=first).delete()
    assert User.objects.get(pk=user.pk).active_orders == 2


def test_a_full_counter_is_recounted_before_a_create_is_refused(settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 2
    user = make_user()
    client = _signed_in_client(user)
    ids = [client.post("/api/orders/", _payload(), format="json").json()["order_id"] for _ in range(2)]
    assert client.post("/api/orders/", _payload(), format="json").status_code == 400  # exactly full

    Order.objects.filter(pk=ids[0]).update(status=OrderStatus.COMPLETED)  # one place free again
    assert User.objects.get(pk=user.pk).active_orders == 2
    assert client.post("/api/orders/", _payload(), format="json").status_code == 201
    assert User.objects.get(pk=user.pk).active_orders == 2  # recounted to 1, then this create's one
    assert client.post("/api/orders/", _payload(), format="json").status_code == 400


def test_a_full_save_of_an_older_user_instance_keeps_the_counter() -> None:
    user = make_user()
    stale = User.objects.get(pk=user.pk)
    Order.objects.create(user=user, order_name="a", schedule_time=timezone.now(), status="scheduled")
    stale.time_zone = "Europe/Berlin"
    stale.save()
    fresh = User.objects.get(pk=user.pk)
    assert fresh.active_orders == 1 and fresh.time_zone == "Europe/Berlin"


def test_the_repair_command_sets_every_counter_exactly() -> None:
    from django.core.management import call_command

    alice, bob = make_user(), make_user()
    for user, status in ((alice, "scheduled"), (alice, "running"), (alice, "paused"), (bob, "scheduled")):
        Order.objects.create(user=user, order_name="o", schedule_time=timezone.now(), status=status)
    Order.objects.filter(user=bob).update(status=OrderStatus.FAILED)
    User.objects.filter(pk=alice.pk).update(active_orders=7)

    call_command("repair_active_order_counts")

    assert User.objects.get(pk=alice.pk).active_orders == 2
    assert User.objects.get(pk=bob.pk).active_orders == 0


def test_orders_total_follows_inserts_and_deletes_and_the_repair_sets_it() -> None:
    from django.core.management import call_command

    user = make_user()
    orders = [
        Order.objects.create(user=user, order_name=f"o{i}", schedule_time=timezone.now(), status="completed")
        for i in range(3)
    ]
    assert User.objects.get(pk=user.pk).orders_total == 3
    orders[0].delete()
    Order.objects.filter(pk=orders[1].pk).delete()
    assert User.objects.get(pk=user.pk).orders_total == 1
    User.objects.filter(pk=user.pk).update(orders_total=40)
    call_command("repair_active_order_counts")
    assert User.objects.get(pk=user.pk).orders_total == 1


# --- list ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"status": "scheduled"}, {"page": 3}, {"search": "nothing-like-it"}])
def test_a_list_is_one_statement_and_one_redis_round_trip(query: dict[str, Any]) -> None:
    user = make_user()
    for i in range(60):
        Order.objects.create(user=user, order_name=f"o{i}", schedule_time=timezone.now(), status="scheduled")
    client = _signed_in_client(user)

    with redis_round_trips() as trips, CaptureQueriesContext(connection) as queries:
        response = client.get("/api/orders/", query)

    assert response.status_code in (200, 404), response.content
    statements = _statements(_sql(queries))
    assert len(statements) <= 2, statements
    assert len(trips) == 1
    if not query:
        assert response.json()["count"] == 60 and len(response.json()["results"]) == 50
        assert "COUNT(" not in statements[0].upper()  # the total is the user's counter


def test_concurrent_inserts_for_one_user_queue_on_the_counter_instead_of_deadlocking() -> None:
    """Inserts that did not lock the user first (the admin, a script): the trigger locks the user's
    row before the foreign-key check, so they take turns."""
    user = make_user()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def insert() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                Order.objects.create(user=user, order_name="o", schedule_time=timezone.now(), status="scheduled")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counted = User.objects.get(pk=user.pk)
    assert counted.orders_total == 40 and counted.active_orders == 40
