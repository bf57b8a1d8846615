"""The orders migrations that install the counters' triggers (0009) and the cap's (0010) run backwards
and forwards on the test database (MariaDB in CI's MariaDB pass, SQLite in the newcomer's), and
leave the counters exact and the cap enforced by the INSERT again.

The counters' own triggers are there at every migration state: after any migrate, backwards too,
orders' post_migrate receiver installs them (active_counts.install_after_migrate), so 0009's
backwards step is not seen here; the cap's trigger goes with its column and comes back with it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import User
from orders import active_counts
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_0009 = "0007_order_failure_overlap_policy"


def _triggers() -> dict[str, str]:
    """The database's triggers, name -> text."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT trigger_name, action_statement FROM information_schema.triggers"
                " WHERE trigger_schema = DATABASE()"
            )
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        return {str(name): str(text) for name, text in cursor.fetchall()}


def _cap_checked() -> bool:
    """Whether an insert trigger reads the row's cap (MariaDB: inside the counters' trigger; SQLite:
    triggers of their own)."""
    return any("active_cap" in text for text in _triggers().values())


def _create(client: Any, name: str) -> Any:
    when = (timezone.now() + timedelta(days=30)).isoformat()
    return client.post("/api/orders/", {"order_name": name, "schedule_time": when}, format="json")


def test_back_to_0007_and_forward_again_recounts_the_counters_and_restores_the_cap(settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 3
    user = make_user()
    client = api_client_for(user)
    for i in range(2):
        assert _create(client, f"before {i}").status_code == 201
    assert _cap_checked()
    call_command("migrate", "orders", BEFORE_0009, verbosity=0)
    try:
        assert not active_counts.has_cap_column()
        assert not _cap_checked()
        counters = {name for name in active_counts.TRIGGER_NAMES if "_cap_" not in name}
        assert counters <= set(_triggers())
        # Counters set wrong directly (no trigger watches accounts_user): the migrations forward must
        # set them from the rows, not carry them on.
        User.objects.filter(pk=user.pk).update(active_orders=0, orders_total=7)
        call_command("migrate", "orders", "0009_speed_active_order_triggers", verbosity=0)
        assert not active_counts.has_cap_column()
        assert User.objects.values_list("active_orders", "orders_total").get(pk=user.pk) == (2, 2)
        User.objects.filter(pk=user.pk).update(active_orders=0, orders_total=0)
    finally:
        call_command("migrate", verbosity=0)
    assert active_counts.has_cap_column()
    assert _cap_checked()
    assert User.objects.values_list("active_orders", "orders_total").get(pk=user.pk) == (2, 2)
    # The cap is the INSERT's again: the third create fits, the fourth is refused with its message.
    assert _create(client, "third").status_code == 201
    refused = _create(client, "fourth")
    assert refused.status_code == 400
    assert "at most 3 active orders" in str(refused.json())
    assert User.objects.values_list("active_orders", "orders_total").get(pk=user.pk) == (3, 3)
