"""Order.active_cap, and the insert trigger that refuses a row over it (orders/active_counts.py):
a create's cap check moves from a locked SELECT in a transaction into its one INSERT."""

from typing import Any

from django.db import migrations, models


def cap_triggers(apps: Any, schema_editor: Any) -> None:
    from orders import active_counts

    active_counts.install(schema_editor.connection.alias, replace=True)
    # Recounted once the new triggers are in, as 0009 did: nothing may leave a counter below the truth.
    active_counts.recount_every_user(schema_editor.connection.alias, ("scheduled", "running"))  # active now


def triggers_without_cap(apps: Any, schema_editor: Any) -> None:
    from orders import active_counts

    active_counts.install(schema_editor.connection.alias, with_cap=False, replace=True)


class Migration(migrations.Migration):
    # MariaDB commits around CREATE TRIGGER: no transaction to pretend to.
    atomic = False
    dependencies = [
        ("orders", "0009_speed_active_order_triggers"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="active_cap",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(cap_triggers, triggers_without_cap),
    ]
