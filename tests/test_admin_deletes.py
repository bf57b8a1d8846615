"""Deleting through the admin goes through the order service: Redis jobs are cancelled too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from orders import jobqueue, services
from orders.models import Order
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def _admin_client() -> Client:
    User.objects.create_superuser(email="root@example.com", password="root-password-123")
    client = Client()
    assert client.login(username="root@example.com", password="root-password-123")
    return client


def _order(user: Any) -> Order:
    due = datetime.now(UTC) + timedelta(hours=1)
    return services.order_create(user=user, definition=services.OrderDefinition(order_name="x", schedule_time=due))


def test_deleting_a_user_in_the_admin_cancels_their_orders_jobs() -> None:
    client = _admin_client()
    user = make_user()
    orders = [_order(user) for _ in range(2)]
    assert jobqueue.scheduled_count() == 2
    response = client.post(f"/admin/accounts/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()
    assert not Order.objects.filter(pk__in=[o.pk for o in orders]).exists()
    assert jobqueue.scheduled_count() == 0
