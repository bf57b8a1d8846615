"""Every write a person makes, shared by the pages, the API and the admin: one function per operation.

orders.py changes an order's definition and state, runs.py adds executions (run now, retry),
idempotency.py makes a client's retried request act once, notifications.py marks notifications read,
deliveries.py sends an order's test webhook.
"""

from orders.services.deliveries import TestDelivery, order_send_test_delivery
from orders.services.idempotency import (
    IdempotencyKeyReused,
    idempotency_key_digest,
    order_create_once,
    order_retry_once,
    order_run_now_once,
)
from orders.services.notifications import notification_mark_all_read, notification_mark_read
from orders.services.orders import (
    OrderDefinition,
    order_create,
    order_definition,
    order_definition_errors,
    order_delete,
    order_pause,
    order_resume,
    order_update,
)
from orders.services.runs import order_retry, order_run_now

__all__ = [
    "IdempotencyKeyReused",
    "OrderDefinition",
    "TestDelivery",
    "idempotency_key_digest",
    "notification_mark_all_read",
    "notification_mark_read",
    "order_create",
    "order_create_once",
    "order_definition",
    "order_definition_errors",
    "order_delete",
    "order_pause",
    "order_resume",
    "order_retry",
    "order_retry_once",
    "order_run_now",
    "order_run_now_once",
    "order_send_test_delivery",
    "order_update",
]
