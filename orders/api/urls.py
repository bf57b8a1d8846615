"""Orders API routes; each accepts the path with or without a trailing slash.

Ids are matched by the `id` path converter (common/converters.py): an id that cannot exist matches
no route, a 404."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

import common.converters  # noqa: F401 - registers the `id` path converter
from orders.api import views


def both(route: str, view: Any, name: str) -> list[URLPattern]:
    """The route with and without its trailing slash (reversed without it)."""
    return [path(route, view, name=name), path(f"{route}/", view)]


urlpatterns = [
    *both("orders", views.OrderListCreateView.as_view(), "api-orders"),
    *both("orders/create", views.OrderCreateView.as_view(), "api-orders-create"),
    *both("orders/<id:order_id>", views.OrderDetailView.as_view(), "api-order"),
    *both("orders/<id:order_id>/executions", views.OrderExecutionsView.as_view(), "api-order-executions"),
    *both("orders/<id:order_id>/upcoming", views.OrderUpcomingView.as_view(), "api-order-upcoming"),
    *both("orders/<id:order_id>/pause", views.OrderActionView.as_view(action="pause"), "api-order-pause"),
    *both("orders/<id:order_id>/resume", views.OrderActionView.as_view(action="resume"), "api-order-resume"),
    *both("orders/<id:order_id>/run-now", views.OrderRunView.as_view(action="run-now"), "api-order-run-now"),
    *both("orders/<id:order_id>/retry", views.OrderRunView.as_view(action="retry"), "api-order-retry"),
    *both("orders/<id:order_id>/test-delivery", views.OrderTestDeliveryView.as_view(), "api-order-test-delivery"),
    *both("notifications", views.NotificationListView.as_view(), "api-notifications"),
    *both("notifications/<id:notification_id>/read", views.NotificationReadView.as_view(), "api-notification-read"),
]
