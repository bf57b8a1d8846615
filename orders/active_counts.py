"""accounts_user.active_orders and orders_total: the active-order cap's counter and the order
list's total, kept by database triggers.

orders_total is exact: an INSERT adds one, a DELETE takes one away (orders are only inserted and
deleted by a user's own requests, the admin and cascades, never by the worker).

Every way an order becomes active (an INSERT with an active status, or an UPDATE from an inactive
status to an active one) adds one to its user's counter in the same statement, whichever code made
it (services, admin, tests, a QuerySet.update()); deleting an active order takes one away (deletes,
like inserts, come from the user's own requests). Finishing or pausing subtracts nothing: a worker
finishing a batch of orders would otherwise take its users' row locks, in no fixed order. So the
counter is at least the number of active orders, never fewer; the cap (orders/sql.py) accepts when
the counter is below it and recounts exactly before it refuses, and `manage.py
repair_active_order_counts` sets every counter exactly.

SQLite drops a table's triggers when a migration rebuilds the table, so install() runs after every
migrate (orders/apps.py), not only in the migration that introduced them.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction

from accounts.models import User
from orders import sql
from orders.models import ACTIVE_ORDER_STATUSES, Order


def _active_list() -> str:
    return "(" + ", ".join(f"'{status.value}'" for status in ACTIVE_ORDER_STATUSES) + ")"


TRIGGER_NAMES = ("orders_order_counters_insert", "orders_order_active_update", "orders_order_total_delete")


def trigger_statements(vendor: str) -> list[str]:
    active = _active_list()
    user = "UPDATE accounts_user SET"
    if vendor == "mysql":
        return [
            # BEFORE, not AFTER: the user's row is locked for the update before the INSERT's foreign-key
            # check takes its shared lock, so two INSERTs for one user queue instead of deadlocking on
            # the upgrade from shared to exclusive.
            "CREATE TRIGGER IF NOT EXISTS orders_order_counters_insert BEFORE INSERT ON orders_order FOR EACH ROW "
            f"{user} orders_total = orders_total + 1, "
            f"active_orders = active_orders + IF(NEW.status IN {active}, 1, 0) WHERE id = NEW.user_id",
            "CREATE TRIGGER IF NOT EXISTS orders_order_active_update AFTER UPDATE ON orders_order FOR EACH ROW "
            f"BEGIN IF NEW.status IN {active} AND OLD.status NOT IN {active} THEN "
            f"{user} active_orders = active_orders + 1 WHERE id = NEW.user_id; END IF; END",
            "CREATE TRIGGER IF NOT EXISTS orders_order_total_delete AFTER DELETE ON orders_order FOR EACH ROW "
            f"{user} orders_total = GREATEST(orders_total, 1) - 1, active_orders = active_orders - "
            f"IF(OLD.status IN {active} AND active_orders > 0, 1, 0) WHERE id = OLD.user_id",
        ]
    if vendor == "sqlite":
        return [
            "CREATE TRIGGER IF NOT EXISTS orders_order_counters_insert AFTER INSERT ON orders_order BEGIN "
            f"{user} orders_total = orders_total + 1, "
            f"active_orders = active_orders + (NEW.status IN {active}) WHERE id = NEW.user_id; END",
            "CREATE TRIGGER IF NOT EXISTS orders_order_active_update AFTER UPDATE OF status ON orders_order "
            f"WHEN NEW.status IN {active} AND OLD.status NOT IN {active} BEGIN "
            f"{user} active_orders = active_orders + 1 WHERE id = NEW.user_id; END",
            "CREATE TRIGGER IF NOT EXISTS orders_order_total_delete AFTER DELETE ON orders_order BEGIN "
            f"{user} orders_total = MAX(orders_total, 1) - 1, "
            f"active_orders = active_orders - (OLD.status IN {active} AND active_orders > 0) "
            "WHERE id = OLD.user_id; END",
        ]
    raise RuntimeError(f"no active-order triggers written for {vendor}")


def install(using: str = "default") -> None:
    """Create the triggers where they are missing (idempotent)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        for statement in trigger_statements(connection.vendor):
            cursor.execute(statement)


def install_after_migrate(using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: the tables exist once orders' migrations ran."""
    connection = connections[using]
    if {"orders_order", "accounts_user"} <= set(connection.introspection.table_names()):
        install(using)


def repair_all(using: str = "default") -> int:
    """Set every user's counters exactly (active orders, all orders), one user at a time under the
    user's row lock. Returns how many users' counters changed."""
    changed = 0
    for user_id in User.objects.using(using).values_list("pk", flat=True).iterator():
        with transaction.atomic(using=using):
            active_changed = sql.recount_active_orders_locked(user_id, using=using)[1]
            total = Order.objects.using(using).filter(user_id=user_id).count()
            total_changed = (
                User.objects.using(using).filter(pk=user_id).exclude(orders_total=total).update(orders_total=total)
            )
            changed += bool(active_changed or total_changed)
    return changed
