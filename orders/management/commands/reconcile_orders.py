from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from orders import repair


class Command(BaseCommand):
    help = (
        "Make Redis match the database: schedule every active order that has no live job, remove jobs whose "
        "order is gone or inactive, and retry runs abandoned by a worker that died."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        report = repair.reconcile()
        self.stdout.write(f"{report} in {time.monotonic() - started:.2f}s")
