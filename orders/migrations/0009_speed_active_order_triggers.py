"""Triggers that keep accounts_user.active_orders at least the user's number of active orders and
orders_total exact (orders/active_counts.py says how and why), every counter set once; and the
order list's index with the id in it."""

from typing import Any

from django.db import migrations, models


def create_triggers(apps: Any, schema_editor: Any) -> None:
    from orders import active_counts

    # As they were then: the cap check (migration 0010) names a column this migration predates.
    active_counts.install(schema_editor.connection.alias, with_cap=False)
    active_counts.recount_every_user(schema_editor.connection.alias, ("scheduled", "running"))  # active then


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    from orders import active_counts

    with schema_editor.connection.cursor() as cursor:
        for name in active_counts.TRIGGER_NAMES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):
    # MariaDB commits around CREATE TRIGGER: no transaction to pretend to.
    atomic = False
    dependencies = [
        ("accounts", "0004_user_active_orders"),
        ("orders", "0007_order_failure_overlap_policy"),
    ]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers),
        # The list's ORDER BY created_at DESC, id DESC in full (a 10,000-order user's page was a filesort).
        migrations.AddIndex(
            model_name="order",
            index=models.Index(fields=["user", "-created_at", "-id"], name="order_user_newest_idx"),
        ),
        migrations.RemoveIndex(model_name="order", name="orders_orde_user_id_0ae59f_idx"),
    ]
