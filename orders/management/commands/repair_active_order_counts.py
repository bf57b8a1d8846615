from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from orders import active_counts


class Command(BaseCommand):
    help = (
        "Set every user's active-order counter (the active-order cap's) to their exact number of active "
        "orders, one user at a time under the user's row lock; also re-creates its triggers if missing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        active_counts.install()
        changed = active_counts.repair_all()
        self.stdout.write(f"{changed} counter(s) corrected")
