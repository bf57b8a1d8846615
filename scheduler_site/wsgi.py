"""WSGI entry point for gunicorn."""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_site.settings")

application = get_wsgi_application()

from common.config import describe_services  # noqa: E402 - needs the settings loaded above

print(describe_services(), file=sys.stderr, flush=True)
