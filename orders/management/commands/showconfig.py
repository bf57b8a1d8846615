from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from common.config import describe_services


class Command(BaseCommand):
    help = "Print which database and Redis this configuration uses."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(describe_services())
