from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Signed HTTP delivery to an owner's endpoint: the URL policy (SSRF guard), signing secrets and the
    httpx client. Knows nothing of orders: the orders side builds the message and calls in."""

    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"
