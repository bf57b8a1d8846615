"""`python -m bench.profile_api [N]`: where an API request's CPU goes, in this process (issue 17).

Calls the web server's own WSGI application (scheduler_site.wsgi) N times per endpoint with a real
JWT, against the benchmark's MariaDB and Redis (bench/environment.py), and reports the CPU time per
request (time.process_time, so waits on MariaDB and Redis do not count) beside bench/floor.py's
application doing the same requests in the same process, then the functions that cost the most under
cProfile (timed by process CPU, and roughly doubling every Python call's cost: read its shares, not its milliseconds).
Unlike `python -m bench.ratio` there is no server, no second thread and no load generator here, so
the CPU figures hardly depend on what else the machine is doing. The profiles are also written to
var/bench/profile-api-{create,list}.prof, for pstats or snakeviz.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.environment import WORK_DIR, bench_env, setup

LIST_ORDERS = 10_000
ROUNDS = 5


def _environ(method: str, path: str, body: bytes = b"", token: str | None = None) -> dict[str, Any]:
    path_info, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return environ


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any], expect: int) -> None:
    status: list[str] = []
    response = app(environ, lambda s, h, exc_info=None: status.append(s))
    try:
        body = b"".join(response)
    finally:
        # As a server does: Django's request_finished (connections and caches closed or kept).
        getattr(response, "close", lambda: None)()
    if not status or int(status[0].split()[0]) != expect:
        raise SystemExit(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}: {status} {body[:300]!r}")


def _requests(app: Callable[..., Iterable[bytes]], make: Callable[[int], dict[str, Any]], n: int, expect: int) -> None:
    for i in range(n):
        _call(app, make(i), expect)


def cpu_ms_per_request(
    app: Callable[..., Iterable[bytes]], make: Callable[[int], dict[str, Any]], n: int, expect: int
) -> float:
    started = time.process_time()
    _requests(app, make, n, expect)
    return (time.process_time() - started) * 1000 / n


def main(n: int) -> dict[str, Any]:
    env = bench_env()
    # The same switches as the web process (scheduler_site/wsgi.py sets CONN_HEALTH_CHECKS too).
    env["CONN_HEALTH_CHECKS"] = "false"
    setup(env)
    from bench import data
    from bench.ratio import reset_product_orders

    data.reset_orders()
    users = data.bench_users(17)
    create_users, list_user = users[:16], users[16]
    data.seed_orders(list_user, LIST_ORDERS)
    tokens = [data.token_for(u) for u in create_users]
    list_token = data.token_for(list_user)

    from django.conf import settings

    # bench/floor.py's views under the product's settings: only the URL conf differs, and the floor
    # application is called without middleware (its settings set none).
    from django.core.handlers.wsgi import WSGIHandler

    import scheduler_site.wsgi as product_wsgi

    full, urlconf = settings.MIDDLEWARE, settings.ROOT_URLCONF
    settings.MIDDLEWARE = []
    try:
        floor_app = WSGIHandler()
    finally:
        settings.MIDDLEWARE = full

    def floor(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # The handler reads the URL conf from the settings on every request.
        settings.ROOT_URLCONF = "bench.floor"
        try:
            return floor_app(environ, start_response)
        finally:
            settings.ROOT_URLCONF = urlconf

    product = product_wsgi.application

    def create(i: int) -> dict[str, Any]:
        body = json.dumps({"order_name": f"probe {i}", "schedule_time": "2031-01-01T00:00:00Z"}).encode()
        return _environ("POST", "/api/orders", body, tokens[i % len(tokens)])

    cases: dict[str, list[tuple[Callable[..., Iterable[bytes]], Callable[[int], dict[str, Any]], int]]] = {
        "create": [
            (product, create, 201),
            (floor, lambda i: _environ("POST", f"/floor/create?user={create_users[i % 16].pk}"), 201),
        ],
        "list": [
            (product, lambda i: _environ("GET", "/api/orders?page=1", token=list_token), 200),
            (floor, lambda i: _environ("GET", f"/floor/list?user={list_user.pk}"), 200),
        ],
    }
    result: dict[str, Any] = {}
    for endpoint, ((p_app, p_make, p_code), (f_app, f_make, f_code)) in cases.items():
        for app, make, code in ((p_app, p_make, p_code), (f_app, f_make, f_code)):
            _requests(app, make, 50, code)  # warm-up: imports, connections, caches
        product_ms, floor_ms = [], []
        for _ in range(ROUNDS):
            reset_product_orders(list_user.pk)
            product_ms.append(cpu_ms_per_request(p_app, p_make, n, p_code))
            reset_product_orders(list_user.pk)
            floor_ms.append(cpu_ms_per_request(f_app, f_make, n, f_code))
        reset_product_orders(list_user.pk)
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        _requests(p_app, p_make, n, p_code)
        profiler.disable()
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(WORK_DIR / f"profile-api-{endpoint}.prof")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(60)
        result[endpoint] = {
            "product_cpu_ms": statistics.median(product_ms),
            "floor_cpu_ms": statistics.median(floor_ms),
            "product_cpu_ms_all": product_ms,
            "floor_cpu_ms_all": floor_ms,
            "profile": text.getvalue(),
        }
    reset_product_orders(list_user.pk)
    return result


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    out = main(count)
    for endpoint, row in out.items():
        print(f"===== {endpoint}")
        print(row["profile"])
    for endpoint, row in out.items():
        print(
            f"{endpoint}: product {row['product_cpu_ms']:.3f} ms CPU/request, floor {row['floor_cpu_ms']:.3f} ms,"
            f" product - floor {row['product_cpu_ms'] - row['floor_cpu_ms']:.3f} ms"
            f" (rounds: {', '.join(f'{x:.3f}' for x in row['product_cpu_ms_all'])}"
            f" / {', '.join(f'{x:.3f}' for x in row['floor_cpu_ms_all'])})"
        )
