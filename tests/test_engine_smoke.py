from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orders import services
from orders.models import Execution, Order
from tests.conftest import make_user
from tests.engine_helpers import log_lines, run_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_time_order_runs_once_not_early() -> None:
    user = make_user()
    due = timezone.now() + timedelta(seconds=2)
    order = services.order_create(user=user, definition=services.OrderDefinition(order_name="smoke", schedule_time=due))
    run_until(lambda: Order.objects.get(pk=order.pk).status == "completed", timeout=15)
    executions = list(Execution.objects.filter(order=order))
    assert len(executions) == 1
    assert executions[0].status == "succeeded"
    started_at = executions[0].started_at
    assert started_at is not None and started_at >= due
    events = [line["event"] for line in log_lines() if line["order_id"] == order.pk]
    assert events == ["created", "started", "succeeded", "completed"]
