"""Orders API routes; each accepts the path with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path

from orders.api import views

ID = r"(?P<order_id>[^/]+)"

urlpatterns = [
    re_path(r"^orders/?$", views.OrderListCreateView.as_view(), name="api-orders"),
    re_path(r"^orders/create/?$", views.OrderCreateView.as_view(), name="api-orders-create"),
    re_path(rf"^orders/{ID}/?$", views.OrderDetailView.as_view(), name="api-order"),
    re_path(rf"^orders/{ID}/executions/?$", views.OrderExecutionsView.as_view(), name="api-order-executions"),
    re_path(rf"^orders/{ID}/upcoming/?$", views.OrderUpcomingView.as_view(), name="api-order-upcoming"),
    re_path(rf"^orders/{ID}/pause/?$", views.OrderActionView.as_view(action="pause"), name="api-order-pause"),
    re_path(rf"^orders/{ID}/resume/?$", views.OrderActionView.as_view(action="resume"), name="api-order-resume"),
    re_path(rf"^orders/{ID}/run-now/?$", views.OrderRunView.as_view(action="run-now"), name="api-order-run-now"),
    re_path(rf"^orders/{ID}/retry/?$", views.OrderRunView.as_view(action="retry"), name="api-order-retry"),
    re_path(r"^notifications/?$", views.NotificationListView.as_view(), name="api-notifications"),
    re_path(
        r"^notifications/(?P<notification_id>[^/]+)/read/?$",
        views.NotificationReadView.as_view(),
        name="api-notification-read",
    ),
]
