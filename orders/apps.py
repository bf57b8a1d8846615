from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, worker, scheduler, commands) loads the apps: tracing starts here when
        # OTEL_EXPORTER_OTLP_ENDPOINT is set, before the WSGI handler builds its middleware.
        from common import tracing

        tracing.configure()
        # Imported before any fork (an RQ work horse), so that a forked child knows it is one.
        import orders.metrics  # noqa: F401
        from orders.active_counts import install_after_migrate

        # The active-order counter's triggers, again after every migrate (orders/active_counts.py).
        post_migrate.connect(install_after_migrate, sender=self, dispatch_uid="orders.active_counts.install")
