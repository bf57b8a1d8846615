"""Order and notification pages (the API lives under /api/, see orders/api/urls.py)."""

from __future__ import annotations

from django.urls import path

import common.converters  # noqa: F401 - registers the `id` path converter
from orders import views

urlpatterns = [
    path("orders/", views.dashboard, name="order-list"),
    path("orders/live", views.dashboard_live, name="order-list-live"),
    path("orders/new", views.order_new, name="order-new"),
    path("orders/preview.json", views.order_preview, name="order-preview"),
    # With or without the trailing slash (reversed without it).
    path("orders/<id:order_id>", views.order_detail, name="order-detail"),
    path("orders/<id:order_id>/", views.order_detail),
    path("orders/<id:order_id>/live", views.order_detail_live, name="order-detail-live"),
    path("orders/<id:order_id>/edit", views.order_edit, name="order-edit"),
    path("orders/<id:order_id>/preview.json", views.order_preview, name="order-preview-existing"),
    path("orders/<id:order_id>/delete", views.order_delete, name="order-delete"),
    path("orders/<id:order_id>/pause", views.order_action, {"action": "pause"}, name="order-pause"),
    path("orders/<id:order_id>/resume", views.order_action, {"action": "resume"}, name="order-resume"),
    path("orders/<id:order_id>/run-now", views.order_action, {"action": "run-now"}, name="order-run-now"),
    path("orders/<id:order_id>/retry", views.order_action, {"action": "retry"}, name="order-retry"),
    path("orders/<id:order_id>/test-delivery", views.order_test_delivery, name="order-test-delivery"),
    path("notifications/", views.notification_list, name="notification-list"),
    path("notifications/read-all", views.notification_read_all, name="notification-read-all"),
    path("notifications/<id:notification_id>/read", views.notification_read, name="notification-read"),
]
