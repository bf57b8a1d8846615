"""The last lines of `make run`'s start-up: which URL to open and what to do next.

`python -m scheduler_site.welcome PORT` runs beside honcho (see the Makefile). It waits until the web
server answers and /healthz says the worker and the scheduler are up too, so that the message comes
after their start-up lines instead of being lost among them. No Django here: it only speaks HTTP.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

# The web server answers within seconds; the worker and scheduler heartbeats follow shortly after.
WEB_TIMEOUT_SECONDS = 120.0
HEALTHY_TIMEOUT_SECONDS = 30.0


def _status(url: str) -> int | None:
    """The HTTP status of url, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1 URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def message(base_url: str) -> str:
    rule = "-" * 72
    return "\n".join(
        [
            "",  # honcho may have left a line half-written
            rule,
            f"  The order scheduler is running. Open {base_url}/",
            "  Next:",
            f"    1. Sign up at {base_url}/signup (an email and a password), then create orders.",
            f"    2. For the admin site ({base_url}/admin/), make a superuser in another terminal:",
            "         .venv/bin/python manage.py createsuperuser",
            "       (with the same DATABASE_URL, if you set one).",
            "  Ctrl-C stops web, worker and scheduler.",
            rule,
        ]
    )


def wait_and_greet(base_url: str, web_timeout: float = WEB_TIMEOUT_SECONDS) -> bool:
    """Print the message once the site is up; False (and a hint) if the web server never answered."""
    health = f"{base_url}/healthz"
    deadline = time.monotonic() + web_timeout
    while (status := _status(health)) is None:
        if time.monotonic() > deadline:
            print(f"The web server did not answer on {base_url} within {web_timeout:.0f} s; see the log above.")
            return False
        time.sleep(0.5)
    # 503 until the worker and the scheduler have reported in; print anyway when they are slow.
    healthy_by = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    while status != 200 and time.monotonic() < healthy_by:
        time.sleep(0.5)
        status = _status(health)
    print(message(base_url), flush=True)
    return True


if __name__ == "__main__":
    port = sys.argv[1] if len(sys.argv) > 1 else "8000"
    sys.exit(0 if wait_and_greet(f"http://127.0.0.1:{port}") else 1)
