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

The insert trigger is also the create's cap check: a row that carries active_cap (the create service
sets it to ORDER_MAX_ACTIVE_PER_USER) is refused with sql.CAP_REACHED when its user's counter is already
at the cap, so a create is one INSERT with no transaction of its own. On MariaDB the check is the
counter's UPDATE itself (`... WHERE active_orders < cap`): an UPDATE waits for the user's row lock
and decides on the newest committed counter, so concurrent creates take turns and the cap is exact.
The counter can be above the true number, so a refusal is not final: the service recounts under
the row lock and inserts again when there is room (orders/services/orders.py, order_create).

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


TRIGGER_NAMES = (
    "orders_order_counters_insert",
    "orders_order_cap_insert",
    "orders_order_cap_clear",
    "orders_order_active_update",
    "orders_order_total_delete",
)


def trigger_statements(vendor: str, *, with_cap: bool = True) -> list[str]:
    """The triggers' CREATE statements; with_cap=False: as migration 0009 made them, before the
    active_cap column existed (a trigger naming a missing column cannot be created)."""
    active = _active_list()
    user = "UPDATE accounts_user SET"
    if vendor == "mysql":
        counters = (
            f"{user} orders_total = orders_total + 1, "
            f"active_orders = active_orders + IF(NEW.status IN {active}, 1, 0) WHERE id = NEW.user_id"
        )
        if with_cap:
            # ROW_COUNT() is the rows the UPDATE matched (Django connects with CLIENT.FOUND_ROWS; it
            # changes every row it matches anyway). None matched with a cap: at the cap, or no such user
            # (the service then inserts without a cap, and the foreign key answers).
            insert_trigger = (
                "CREATE TRIGGER IF NOT EXISTS orders_order_counters_insert BEFORE INSERT ON orders_order "
                f"FOR EACH ROW BEGIN {counters} AND (NEW.active_cap IS NULL OR NEW.status NOT IN {active} "
                "OR active_orders < NEW.active_cap); "
                "IF NEW.active_cap IS NOT NULL AND ROW_COUNT() = 0 THEN "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{sql.CAP_REACHED}'; END IF; "
                # A request to this trigger, not a fact about the order: never stored, so a row dumped
                # and loaded again (loaddata) is not held to the cap of the day it was created.
                "SET NEW.active_cap = NULL; END"
            )
        else:
            insert_trigger = (
                f"CREATE TRIGGER IF NOT EXISTS orders_order_counters_insert BEFORE INSERT ON orders_order "
                f"FOR EACH ROW {counters}"
            )
        return [
            # BEFORE, not AFTER: the user's row is locked for the update before the INSERT's foreign-key
            # check takes its shared lock, so two INSERTs for one user queue instead of deadlocking on
            # the upgrade from shared to exclusive.
            insert_trigger,
            "CREATE TRIGGER IF NOT EXISTS orders_order_active_update AFTER UPDATE ON orders_order FOR EACH ROW "
            f"BEGIN IF NEW.status IN {active} AND OLD.status NOT IN {active} THEN "
            f"{user} active_orders = active_orders + 1 WHERE id = NEW.user_id; END IF; END",
            "CREATE TRIGGER IF NOT EXISTS orders_order_total_delete AFTER DELETE ON orders_order FOR EACH ROW "
            f"{user} orders_total = GREATEST(orders_total, 1) - 1, active_orders = active_orders - "
            f"IF(OLD.status IN {active} AND active_orders > 0, 1, 0) WHERE id = OLD.user_id",
        ]
    if vendor == "sqlite":
        # One writer at a time: a BEFORE trigger reading the counter is as exact as MariaDB's UPDATE.
        cap = (
            [
                "CREATE TRIGGER IF NOT EXISTS orders_order_cap_insert BEFORE INSERT ON orders_order "  # noqa: S608
                f"WHEN NEW.active_cap IS NOT NULL AND NEW.status IN {active} AND "
                "(SELECT active_orders FROM accounts_user WHERE id = NEW.user_id) >= NEW.active_cap "
                f"BEGIN SELECT RAISE(ABORT, '{sql.CAP_REACHED}'); END",
                # Not stored, as on MariaDB (whose BEFORE trigger can clear NEW; SQLite's cannot).
                "CREATE TRIGGER IF NOT EXISTS orders_order_cap_clear AFTER INSERT ON orders_order "
                "WHEN NEW.active_cap IS NOT NULL "
                "BEGIN UPDATE orders_order SET active_cap = NULL WHERE id = NEW.id; END",
            ]
            if with_cap
            else []
        )
        return [
            *cap,
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


def install(using: str = "default", *, with_cap: bool = True, replace: bool = False) -> None:
    """Create the triggers where they are missing (idempotent). replace, for a migration that changes
    one: MariaDB replaces each in one statement (CREATE OR REPLACE), so the table is never without
    them; SQLite drops and creates them in one transaction (one writer at a time)."""
    connection = connections[using]
    statements = trigger_statements(connection.vendor, with_cap=with_cap)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for statement in statements:
            if replace and connection.vendor == "mysql":
                statement = statement.replace("CREATE TRIGGER IF NOT EXISTS", "CREATE OR REPLACE TRIGGER", 1)
            elif replace:
                name = statement.split("IF NOT EXISTS ", 1)[1].split(" ", 1)[0]
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(statement)
        if replace and not with_cap:
            for name in ("orders_order_cap_insert", "orders_order_cap_clear"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def has_cap_column(using: str = "default") -> bool:
    """Whether orders_order has active_cap yet (migration 0010): the cap's triggers name it, and a
    trigger naming a missing column fails, at CREATE on MariaDB and at every INSERT on SQLite."""
    connection = connections[using]
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, Order._meta.db_table)
    return any(column.name == "active_cap" for column in columns)


def install_after_migrate(using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: the tables exist once orders' migrations ran (with the cap only once
    its column does: a database migrated back to 0009 keeps 0009's triggers)."""
    connection = connections[using]
    if {"orders_order", "accounts_user"} <= set(connection.introspection.table_names()):
        install(using, with_cap=has_cap_column(using))


def recount_every_user(using: str, active_statuses: tuple[str, ...]) -> None:
    """Set every user's counters from their orders in one statement, for a migration that has just
    (re)installed the triggers (no row locks: migrations run before the traffic). active_statuses is
    the migration's own, frozen, list."""
    statuses = ", ".join(f"'{status}'" for status in active_statuses)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_user SET active_orders = (SELECT COUNT(*) FROM orders_order WHERE "  # noqa: S608 - constants
            f"orders_order.user_id = accounts_user.id AND orders_order.status IN ({statuses})), "
            "orders_total = (SELECT COUNT(*) FROM orders_order WHERE orders_order.user_id = accounts_user.id)"
        )


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
