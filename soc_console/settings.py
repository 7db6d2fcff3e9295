"""Settings for the SOC Approval Console.

One module, configured from environment variables. Every variable has a default that runs
locally with no configuration (SQLite, Redis on localhost); a bad value stops start-up with
ImproperlyConfigured instead of being silently ignored.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from agents import ladder
from soc_console import roles

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


_Number = TypeVar("_Number", int, float)


def _env_number(
    name: str,
    default: _Number,
    parse: Callable[[str], _Number],
    *,
    kind: str,
    minimum: _Number | None,
) -> _Number:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, kind="an integer", minimum=minimum)


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    return _env_number(name, default, float, kind="a number", minimum=minimum)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_urls(
    name: str, accepted: Callable[[SplitResult, int | None], bool], *, expected: str
) -> list[str]:
    """A comma-separated list of URLs, each one `accepted` (given its parts and its port, None
    when it has none or not a number), or ImproperlyConfigured saying what was `expected`."""
    urls = env_list(name, [])
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not accepted(parts, port):
            raise ImproperlyConfigured(f"{name}: {url!r} is {expected}")
    return urls


DEBUG = env_bool("DEBUG", False)
# Published keys, for DEBUG only. Anywhere else a known SECRET_KEY lets anyone forge a session,
# and a known pepper lets a copy of the key table be checked offline, so both must be the
# deployment's own (`make run` keeps generated ones in .run/secrets.env, see bin/with-secrets).
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"  # noqa: S105
DEV_API_KEY_PEPPER = "dev-only-insecure-api-key-pepper"
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY if DEBUG else "")
# API keys are stored as a keyed digest under their own pepper, never derived from SECRET_KEY:
# rotating SECRET_KEY (sessions, CSRF) must not invalidate every agent's key.
API_KEY_PEPPER = env_str("API_KEY_PEPPER", DEV_API_KEY_PEPPER if DEBUG else "")
if not DEBUG:
    _unsafe = [
        name
        for name, value, published in (
            ("SECRET_KEY", SECRET_KEY, DEV_SECRET_KEY),
            ("API_KEY_PEPPER", API_KEY_PEPPER, DEV_API_KEY_PEPPER),
        )
        if not value.strip() or value == published
    ]
    if _unsafe:
        # SystemExit rather than ImproperlyConfigured: every entry point (manage.py, the web
        # server, Celery) stops with this one line instead of a traceback.
        raise SystemExit(
            f"{' and '.join(_unsafe)} must be set to a secret of this deployment when DEBUG is "
            "off (generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'); "
            "`make run` generates its own in .run/secrets.env"
        )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# A console form posted with a token that no longer matches (signed out and in again in another
# tab) is answered with a message its page can show; other requests get Django's page.
CSRF_FAILURE_VIEW = "approvals.views.common.csrf_failure"
# Where links in callbacks, exports and API answers point; by default the port `make run` uses.
PUBLIC_URL = env_str("PUBLIC_URL", f"http://127.0.0.1:{os.environ.get('SOC_PORT') or 8000}").rstrip(
    "/"
)

# HTTPS. All off by default, because `make run` serves plain http on localhost; a deployment
# behind TLS turns them on (README, "Production").
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_SECONDS and (SECURE_HSTS_INCLUDE_SUBDOMAINS or SECURE_HSTS_PRELOAD):
    raise ImproperlyConfigured(
        "SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_PRELOAD need SECURE_HSTS_SECONDS: "
        "without it no Strict-Transport-Security header is sent at all"
    )
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers, orchestrators and Prometheus reach /healthz, /readyz and /metrics over plain
# http from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Only behind a proxy that sets X-Forwarded-Proto itself and strips any a client sent: with
# this on, that header alone decides whether a request came over https.
if env_bool("TRUST_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (django-csp): scripts, styles and connections from this origin only,
# no inline script or style, no eval. htmx is told not to inject its indicator styles nor to
# evaluate anything (templates/base.html). The API docs page relaxes it for Swagger UI
# (soc_console/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # data: for the page's empty favicon (and the admin's and Swagger UI's inline icons).
        "img-src": [SELF, "data:"],
        # 'self' covers the console's own ws:// and wss:// socket.
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "channels",
    "axes",
    "csp",
    "audit",
    "agents",
    "approvals",
]

MIDDLEWARE = [
    # First: whatever is logged while a request is handled carries its request id.
    "soc_console.logs.RequestContextMiddleware",
    # Then every error under /api/v1/, whoever answers it, in problem+json.
    "soc_console.problems.ApiProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# The intake benchmark adds a bare reference endpoint; nothing else sets this.
ROOT_URLCONF = "bench.urls" if env_bool("BENCH_URLS", False) else "soc_console.urls"
ASGI_APPLICATION = "soc_console.asgi.application"
WSGI_APPLICATION = None

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
                "soc_console.context_processors.console",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "")
# A read replica for the managers' reports (soc_console/replica.py routes them there): their
# reads scan whole periods, and on a replica they take nothing from the primary that every
# submission, decision and execution writes to. Unset, reports read the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL and not DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_REPLICA_URL needs DATABASE_URL (a PostgreSQL primary)")


def postgres_database(url: str) -> dict[str, object]:
    """A PostgreSQL connection's settings from its URL, with the pool and prepared statements
    every process of the console uses."""
    database: dict[str, object] = dj_database_url.parse(url)
    if database["ENGINE"] != "django.db.backends.postgresql":
        return database
    # Under ASGI each request may run on a different thread, so persistent per-thread
    # connections pile up; a pool per process reuses a few connections instead.
    # Parameters travel apart from the statement, and a statement a connection runs
    # again and again (a claim, an audit append, the queue's reads) is prepared after its
    # fifth run: PostgreSQL plans it once per connection instead of on every execution,
    # and planning costs more than running most of these. Turn it off for a connection
    # pooler that cannot keep prepared statements (PgBouncer before 1.21, or without
    # max_prepared_statements). Options given in the URL (sslmode, …) are kept.
    prepared = env_bool("DATABASE_PREPARED_STATEMENTS", True)
    options: dict[str, object] = database.setdefault("OPTIONS", {})
    options.update({"server_side_binding": prepared, "prepare_threshold": 5 if prepared else None})
    pool_size = env_int("DATABASE_POOL_MAX", 8, minimum=0)
    if pool_size:
        options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 10}
        # A connection that PostgreSQL dropped (a restart, a failover) is replaced before
        # the pool lends it, instead of failing the next request or task. This backend
        # checks that without a query; see soc_console/postgresql/base.py.
        database["ENGINE"] = "soc_console.postgresql"
    return database


if DATABASE_URL:
    DATABASES = {"default": postgres_database(DATABASE_URL)}
    if DATABASE_REPLICA_URL:
        DATABASES["replica"] = postgres_database(DATABASE_REPLICA_URL)
        if not str(DATABASES["replica"]["ENGINE"]).endswith("postgresql"):
            raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL")
        # A test run reads the replica through the primary's test database.
        DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # The web server, worker and beat share one file: WAL and IMMEDIATE transactions
            # make concurrent writers wait for each other instead of failing with "locked".
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The connection the reports read through: the replica when there is one. The router sends a
# report's reads there and every other read and write to "default".
REPORTS_DATABASE = "replica" if "replica" in DATABASES else "default"
DATABASE_ROUTERS = ["soc_console.replica.ReportsRouter"]
# The role that owns the tables and runs `migrate`; DATABASE_URL is then the runtime role,
# which `migrate` grants what the app needs and no more (audit tables: read and append only).
MIGRATION_DATABASE_URL = env_str("MIGRATION_DATABASE_URL", "")
if MIGRATION_DATABASE_URL:
    _owner = dj_database_url.parse(MIGRATION_DATABASE_URL)
    _runtime = DATABASES["default"]
    if not _runtime["ENGINE"].endswith("postgresql") or not _owner["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured(
            "MIGRATION_DATABASE_URL needs PostgreSQL in both it and DATABASE_URL (roles)"
        )
    if any(_owner.get(k) != _runtime.get(k) for k in ("NAME", "HOST", "PORT")):
        raise ImproperlyConfigured(
            "MIGRATION_DATABASE_URL must name the same database, host and port as DATABASE_URL"
        )

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_PREFIX = env_str("CHANNEL_PREFIX", "soc")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CHANNEL_PREFIX,
    }
}

CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: one Redis PUBLISH per broadcast, received once per server process, which
        # hands it to its open consoles (approvals/consumers.py). The list-based
        # RedisChannelLayer pushed, popped and decoded one Redis message per console; at 200
        # consoles and 20 proposals a second a 2-core server fell tens of seconds behind
        # (bench/live.py). Console updates are at-most-once either way: a page that loses its
        # socket re-fetches the queue when it reconnects.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{CHANNEL_PREFIX}:asgi"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Sign-in throttling (django-axes): after AXES_FAILURE_LIMIT failed sign-ins for a username, or
# from an address, within AXES_COOLOFF_MINUTES, that username or address is refused for
# AXES_COOLOFF_MINUTES (counted from the lockout: attempts during it do not prolong it).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15.0, minimum=0.001))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one alone locks
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not clear the count: it would let someone with any account reset the
# address's count by signing in between guesses at another's password.
AXES_RESET_ON_SUCCESS = False
# The peer address as the server saw it: a client-supplied X-Forwarded-For must not pick the
# address it is counted under (uvicorn's --proxy-headers rewrites it for trusted proxies only).
AXES_CLIENT_IP_CALLABLE = "approvals.accounts.client_address"
AXES_LOCKOUT_CALLABLE = "approvals.accounts.lockout_response"
AXES_VERBOSE = False

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Single sign-on through the SOC's OpenID Connect provider (mozilla-django-oidc; the names are
# that library's). On when OIDC_RP_CLIENT_ID is set; every role is then re-computed at each
# sign-in from the provider's role claim (approvals/oidc.py), so a group the provider removes
# takes its role away at the next sign-in.
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
if OIDC_ENABLED:

    def _oidc_endpoint(name: str, *, required: bool = True) -> str:
        url = env_str(name, "").strip()
        if not url and not required:
            return ""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ImproperlyConfigured(f"{name} must be the provider's https:// URL, not {url!r}")
        # Codes, tokens and the user's claims travel over these: plain http only on loopback,
        # where a test or a provider on the same host answers.
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise ImproperlyConfigured(f"{name} must use https (plain http on loopback only)")
        return url

    OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET", "")
    if not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured("OIDC_RP_CLIENT_SECRET is required with OIDC_RP_CLIENT_ID")
    OIDC_OP_AUTHORIZATION_ENDPOINT = _oidc_endpoint("OIDC_OP_AUTHORIZATION_ENDPOINT")
    OIDC_OP_TOKEN_ENDPOINT = _oidc_endpoint("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = _oidc_endpoint("OIDC_OP_USER_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = _oidc_endpoint("OIDC_OP_JWKS_ENDPOINT")
    # When set, an ID token from any other issuer is refused (its audience is always checked).
    OIDC_OP_ISSUER = env_str("OIDC_OP_ISSUER", "").strip()
    OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "") or "RS256"
    if OIDC_RP_SIGN_ALGO not in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512"):
        # HS256 would make the client secret the provider's signing key.
        raise ImproperlyConfigured(
            f"OIDC_RP_SIGN_ALGO must be an RS or ES algorithm, not {OIDC_RP_SIGN_ALGO!r}"
        )
    OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "") or "openid email profile"
    OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
    OIDC_VERIFY_SSL = env_bool("OIDC_VERIFY_SSL", True)
    OIDC_TIMEOUT = env_float("OIDC_TIMEOUT_SECONDS", 10.0, minimum=0.1)
    # The claim that names the console user (and the audit trail's actor); a claim the provider
    # controls, which its users cannot edit themselves.
    OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "") or "preferred_username"
    OIDC_ROLE_CLAIM = env_str("OIDC_ROLE_CLAIM", "") or "groups"
    try:
        OIDC_ROLE_MAP = roles.parse_role_map(env_str("OIDC_ROLE_MAP", ""))
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"OIDC_ROLE_MAP: {exc} (write group=role,group=role or a JSON object)"
        ) from exc
    # What the sign-in page's button says: "Sign in with <OIDC_PROVIDER_NAME>".
    OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "") or "single sign-on"
    # A session from the provider lasts this long (default a 12-hour shift) rather than
    # Django's two weeks: roles are re-computed at sign-in, so this bounds how long a group
    # removed at the provider keeps its role here.
    OIDC_SESSION_HOURS = env_float("OIDC_SESSION_HOURS", 12.0, minimum=0.01)
    OIDC_CALLBACK_CLASS = "approvals.views.signin.OIDCCallback"
    LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL
    AUTHENTICATION_BACKENDS.append("approvals.oidc.ConsoleOIDCBackend")
# LOCAL_LOGIN=off: the sign-in page offers only the provider; a password is refused there and
# on the admin's sign-in, and sessions signed in with a password are no longer valid.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
if not LOCAL_LOGIN:
    if not OIDC_ENABLED:
        raise ImproperlyConfigured(
            "LOCAL_LOGIN=off needs single sign-on (OIDC_RP_CLIENT_ID and the OIDC_OP_* "
            "endpoints): otherwise nobody can sign in"
        )
    AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# `collectstatic` (run by `make run` and the image build) writes each file under a name with
# its content's hash, gzipped beside it, and a manifest; pages link those names, and WhiteNoise
# serves them with a year's Cache-Control (soc_console/static.py). With DEBUG on, pages link
# the plain names and WhiteNoise finds them in the apps' static folders.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "soc-console@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.ApiKeyAuthentication",
        # Chat-ops bots decide as a person: "Authorization: Token <key>" (manage.py
        # drf_create_token USERNAME), or the browser session.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON that jsonb and the audit hash can hold alike, nested at most 20 deep, or a 400.
    "DEFAULT_PARSER_CLASSES": ["soc_console.parsers.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "soc_console.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SOC Approval Console API",
    "DESCRIPTION": "Agents propose containment actions; analysts decide; workers execute.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page must work offline and run no third-party script next to analysts' sessions.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Severity, criticality and scope tiers share one scale; name it once.
    "ENUM_NAME_OVERRIDES": {"LowToCriticalEnum": "agents.models.Criticality"},
    # Ids in paths are read in either case (soc_console/urls.py); the schema says UUID.
    "PATH_CONVERTER_OVERRIDES": {"anyuuid": {"type": "string", "format": "uuid"}},
}

# The audit log: each event's hash is an HMAC under AUDIT_KEY, which never reaches the
# database, so whoever can write the tables cannot re-hash the chain after rewriting it. Like
# SECRET_KEY, it must be the deployment's own when DEBUG is off (`make run` generates one).
DEV_AUDIT_KEY = "dev-only-audit-key-not-for-production-0123456789"
AUDIT_KEY = env_str("AUDIT_KEY", DEV_AUDIT_KEY if DEBUG else "")
if not DEBUG and (not AUDIT_KEY.strip() or AUDIT_KEY == DEV_AUDIT_KEY):
    raise SystemExit(
        "AUDIT_KEY must be set to a secret of this deployment when DEBUG is off (generate one "
        "with: python3 -c 'import secrets; print(secrets.token_hex(32))'), kept outside the "
        "database; `make run` generates its own in .run/secrets.env"
    )
if len(AUDIT_KEY) < 32:
    raise SystemExit("AUDIT_KEY must be at least 32 characters long")


# Signed checkpoints of the chain's head go to each of these (comma-separated):
# file:///path.jsonl (verify_audit reads it back) and syslog+tcp://host:port.
def _anchor_url(parts: SplitResult, port: int | None) -> bool:
    return bool(
        (parts.scheme == "file" and parts.netloc == "" and parts.path.startswith("/"))
        or (parts.scheme == "syslog+tcp" and parts.hostname and port)
    )


AUDIT_ANCHOR_URL = env_urls(
    "AUDIT_ANCHOR_URL",
    _anchor_url,
    expected="neither file:///absolute/path.jsonl nor syslog+tcp://host:port",
)
AUDIT_ANCHOR_SECONDS = env_float("AUDIT_ANCHOR_SECONDS", 60.0, minimum=1.0)


# Every audit event, at least once and in order, to each of these (comma-separated; the
# Procfile's `forward` process, audit/forward.py): syslog+tcp://host:port and
# syslog+tls://host:port (RFC 5424, octet-counted), https://host[:port][/path] (Splunk HTTP
# Event Collector or a receiver that speaks its protocol; the path defaults to
# /services/collector/event, and http:// is accepted for a collector on the same host).
def _forward_url(parts: SplitResult, port: int | None) -> bool:
    return bool(
        (parts.scheme in ("syslog+tcp", "syslog+tls") and parts.hostname and port)
        or (parts.scheme in ("https", "http") and parts.hostname and not parts.username)
    ) and not (parts.query or parts.fragment)


AUDIT_FORWARD_URL = env_urls(
    "AUDIT_FORWARD_URL",
    _forward_url,
    expected=(
        "none of syslog+tcp://host:port, syslog+tls://host:port or "
        "https://host[:port][/path] (the token goes in AUDIT_FORWARD_TOKEN, not in the URL)"
    ),
)
# The HTTP Event Collector's token, sent as `Authorization: Splunk <token>`.
AUDIT_FORWARD_TOKEN = env_str("AUDIT_FORWARD_TOKEN", "")
if any(url.startswith(("https:", "http:")) for url in AUDIT_FORWARD_URL) and not (
    AUDIT_FORWARD_TOKEN.strip()
):
    raise ImproperlyConfigured(
        "AUDIT_FORWARD_URL names an HTTP Event Collector: set AUDIT_FORWARD_TOKEN"
    )
# The CA certificates (PEM) that syslog+tls:// and https:// receivers are checked against;
# the system's by default.
AUDIT_FORWARD_CA_FILE = env_str("AUDIT_FORWARD_CA_FILE", "")
AUDIT_FORWARD_BATCH = env_int("AUDIT_FORWARD_BATCH", 500, minimum=1)
# How often the forwarder looks for new events once it has caught up.
AUDIT_FORWARD_POLL_SECONDS = env_float("AUDIT_FORWARD_POLL_SECONDS", 1.0, minimum=0.05)
# Connecting, and each send, may take this long before the receiver counts as down.
AUDIT_FORWARD_TIMEOUT_SECONDS = env_float("AUDIT_FORWARD_TIMEOUT_SECONDS", 10.0, minimum=0.1)


# Agent API limits.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 65536, minimum=1024)
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600, minimum=1)

# Targets and the asset inventory (agents/targets.py).
# The criticality of a target that matches nothing in the inventory: failing closed, an
# unknown asset is treated as an important one.
UNKNOWN_ASSET_CRITICALITY = env_str("UNKNOWN_ASSET_CRITICALITY", "high").strip().lower()
if UNKNOWN_ASSET_CRITICALITY not in ladder.LADDER:
    raise ImproperlyConfigured(
        f"UNKNOWN_ASSET_CRITICALITY must be one of {', '.join(ladder.LADDER)}, "
        f"not {UNKNOWN_ASSET_CRITICALITY!r}"
    )


_NETBIOS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Two labels or more, the last not a number (which would make it an address).
_DNS_SUFFIX = re.compile(rf"(?:{_DNS_LABEL}\.)+(?!(?:[0-9]+|0x[0-9a-f]*)$){_DNS_LABEL}")


def env_domains(name: str) -> dict[str, str]:
    """NetBIOS domain → DNS suffix, from "CORP=corp.example,EU=eu.corp.example"."""
    mapping: dict[str, str] = {}
    for item in env_list(name, []):
        netbios, sep, suffix = item.partition("=")
        netbios, suffix = netbios.strip().lower(), suffix.strip().lower().removesuffix(".")
        if (
            not sep
            or not _NETBIOS_NAME.fullmatch(netbios)
            or not _DNS_SUFFIX.fullmatch(suffix)
            or len(suffix) > 253
        ):
            raise ImproperlyConfigured(
                f"{name} must list DOMAIN=dns.suffix pairs such as CORP=corp.example, not {item!r}"
            )
        mapping[netbios] = suffix
    return mapping


# Down-level user names (CORP\jdoe) are the user principal jdoe@corp.example.
TARGET_DOMAINS = env_domains("TARGET_DOMAINS")

# Queue and lifecycle.
QUEUE_PAGE_SIZE = env_int("QUEUE_PAGE_SIZE", 50, minimum=1)
# A filtered queue re-reads its list from the server this often: live updates carry the whole
# queue's first page only, so a matching proposal below it arrives this way.
QUEUE_FILTER_REFRESH_SECONDS = env_float("QUEUE_FILTER_REFRESH_SECONDS", 10.0, minimum=0.5)
# An open console re-reads its session this often (and closes when it has ended): signing out,
# a deactivation or a role taken away close it at once, an expiry has no event of its own.
CONSOLE_SESSION_CHECK_SECONDS = env_float("CONSOLE_SESSION_CHECK_SECONDS", 60.0, minimum=0.05)
# An open console hears from the server at least this often: an empty beat when there is
# nothing else to send. A page that hears nothing for three beats takes its socket for dead
# (a laptop that slept, a proxy or NAT that dropped the connection without a word), says so
# and connects again, then re-reads the queue.
CONSOLE_HEARTBEAT_SECONDS = env_float("CONSOLE_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
# Render and send live updates on a background thread, so a request or task does not wait.
LIVE_UPDATES_IN_BACKGROUND = env_bool("LIVE_UPDATES_IN_BACKGROUND", True)
# The top bar's counts in live updates are read at most this often per process (each read is
# one pass over the pending proposals); a burst of updates is followed by one with fresh counts.
LIVE_COUNTERS_SECONDS = min(env_float("LIVE_COUNTERS_SECONDS", 0.25), 60.0)
# What surrounds the cards (duplicate groups, other proposals open on a target) follows their
# changes by at most this long, rendered once for all the changes in that moment.
LIVE_CONTEXT_SECONDS = min(env_float("LIVE_CONTEXT_SECONDS", 0.1), 5.0)
REVIEW_SECONDS_MAX = env_int("REVIEW_SECONDS_MAX", 3600, minimum=60)
RUBBER_STAMP_SECONDS = env_float("RUBBER_STAMP_SECONDS", 4.0)
# A policy in shadow may be promoted once this many of the proposals it judged can be scored
# (approvals/selectors/shadow.py: all but those still waiting for an analyst's verdict).
SHADOW_MIN_SAMPLE = env_int("SHADOW_MIN_SAMPLE", 30, minimum=1)


def parse_shift_bands(raw: str) -> tuple[tuple[str, int, int], ...]:
    """'day=05-12,afternoon=12-19,night=19-05': named bands of the day, by the hour a shift
    starts (end excluded, wrapping past midnight); together they cover every hour once."""
    bands = []
    for item in raw.split(","):
        name, _, hours = item.strip().partition("=")
        start, _, end = hours.partition("-")
        if not name.strip() or not start.strip().isdigit() or not end.strip().isdigit():
            raise ValueError(f"{item.strip()!r} is not name=HH-HH")
        first, last = int(start), int(end)
        if not (0 <= first <= 23 and 0 <= last <= 24 and first != last):
            raise ValueError(f"{item.strip()!r}: hours run 00-24 and a band is not empty")
        bands.append((name.strip(), first, last % 24))
    for hour in range(24):
        if sum(_in_band(hour, first, last) for _, first, last in bands) != 1:
            raise ValueError(f"the bands must cover each hour exactly once; {hour:02d}:00 is not")
    if len({name for name, _, _ in bands}) != len(bands):
        raise ValueError("each band needs its own name")
    return tuple(bands)


def _in_band(hour: int, first: int, last: int) -> bool:
    return first <= hour < last if first < last else (hour >= first or hour < last)


def env_shift_bands(name: str, default: str) -> tuple[tuple[str, int, int], ...]:
    raw = os.environ.get(name) or default
    try:
        return parse_shift_bands(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from exc


def env_time_zone(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    try:
        ZoneInfo(raw)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise ImproperlyConfigured(
            f"{name} must be a time zone such as Europe/Paris, not {raw!r}"
        ) from exc
    return raw


# Reports: the time zone of their dates, hours of day and shift bands (the console's own by
# default), and the bands a shift is filed under by the hour it starts.
REPORT_TIME_ZONE = env_time_zone("REPORT_TIME_ZONE", TIME_ZONE)
SHIFT_BANDS = env_shift_bands("SHIFT_BANDS", "day=05-12,afternoon=12-19,night=19-05")
# Reports' daily rollups (audit.reports.rollup): a day's rollup is rebuilt this many seconds
# after a change to one of its proposals (changes meanwhile wait for the same rebuild), and
# beat rebuilds today's and yesterday's every ROLLUP_SWEEP_SECONDS, whatever was missed.
ROLLUP_DELAY_SECONDS = env_float("ROLLUP_DELAY_SECONDS", 60.0)
ROLLUP_SWEEP_SECONDS = env_float("ROLLUP_SWEEP_SECONDS", 600.0, minimum=1.0)

# Execution engine.
EXECUTION_LEASE_SECONDS = env_int("EXECUTION_LEASE_SECONDS", 60, minimum=1)
EXECUTION_QUEUED_STALE_SECONDS = env_int("EXECUTION_QUEUED_STALE_SECONDS", 30, minimum=1)
EXECUTION_MAX_ATTEMPTS = env_int("EXECUTION_MAX_ATTEMPTS", 5, minimum=1)
EXECUTION_BACKOFF_BASE_SECONDS = env_float("EXECUTION_BACKOFF_BASE_SECONDS", 1.0)
EXECUTION_BACKOFF_MAX_SECONDS = env_float("EXECUTION_BACKOFF_MAX_SECONDS", 30.0)
# An analyst's approval waits this long before its execution may start, so that a slip (the
# wrong card, the wrong key) can be undone before anything reaches a connector; 0 turns the
# window off. Automatic approvals are not delayed: no human gave them.
APPROVAL_UNDO_SECONDS = env_float("APPROVAL_UNDO_SECONDS", 5.0)
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 10.0, minimum=0.5)
# Escalation mail is a digest: each senior analyst gets at most one mail per this many minutes,
# listing every proposal escalated since the last one (the sweep sends it).
ESCALATION_DIGEST_MINUTES = env_float("ESCALATION_DIGEST_MINUTES", 15.0, minimum=0)
CONNECTOR_LATENCY_MS = env_int("CONNECTOR_LATENCY_MS", 0, minimum=0)
# Targets named slow-… take this long per call (a slow outside system; stop a worker mid-call).
CONNECTOR_SLOW_MS = env_int("CONNECTOR_SLOW_MS", 15000, minimum=0)
CONNECTOR_FAILURE = env_str("CONNECTOR_FAILURE", "")  # "", "transient" or "permanent"
# Agents' callback URLs on private or loopback addresses are refused unless this is on.
CALLBACK_ALLOW_PRIVATE_NETWORKS = env_bool("CALLBACK_ALLOW_PRIVATE_NETWORKS", False)
CALLBACK_TIMEOUT_SECONDS = env_float("CALLBACK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# A delivery's whole time, name check, connect, send and reading the answer's status together:
# the per-step timeout above never fires on a receiver that trickles a byte every few seconds.
CALLBACK_DEADLINE_SECONDS = env_float("CALLBACK_DEADLINE_SECONDS", 10.0, minimum=0.5)
# After a failed delivery the agent's receiver is paused this long (doubled at each failure
# after it, up to a minute): its other deliveries wait instead of holding a worker's thread.
CALLBACK_PAUSE_SECONDS = env_float("CALLBACK_PAUSE_SECONDS", 1.0, minimum=0)
WORKER_HEARTBEAT_INTERVAL_SECONDS = env_float("WORKER_HEARTBEAT_INTERVAL_SECONDS", 10.0, minimum=1)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", 60, minimum=5)
if WORKER_HEARTBEAT_MAX_AGE_SECONDS <= WORKER_HEARTBEAT_INTERVAL_SECONDS:
    raise ImproperlyConfigured(
        "WORKER_HEARTBEAT_MAX_AGE_SECONDS must exceed WORKER_HEARTBEAT_INTERVAL_SECONDS, or "
        "/healthz reports healthy workers as degraded between two beats"
    )

# The broker: Redis (the default, REDIS_URL) or RabbitMQ (amqp://user:password@host:5672/vhost),
# the broker large Celery deployments pick; the channel layer and the cache stay on Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
BROKER_SCHEME = urlsplit(CELERY_BROKER_URL).scheme
if BROKER_SCHEME not in ("redis", "rediss", "amqp", "amqps"):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL must be a redis:// or amqp:// URL, not {BROKER_SCHEME or '(none)'}://"
    )
BROKER_IS_RABBITMQ = BROKER_SCHEME in ("amqp", "amqps")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# At least once: a message is acknowledged after its task ran, and goes back to the queue when
# the worker process running it dies. Running twice is safe (claims are compare-and-set,
# connector calls carry the execution's idempotency key); never running is not.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection (and, in a prefork child, the whole
# pool) before and after each task, so each task would open a new PostgreSQL connection.
# This setting stops that; soc_console/celery.py hands connections back the way Django does
# after a request, which keeps the pool and still drops broken or expired connections.
CELERY_DB_REUSE_MAX = 10**9
# Redis hands an unacknowledged message to another worker after the visibility timeout. Every
# task, and every retry's countdown, must end well before that, or one slow task runs twice at
# the same time.
# (RabbitMQ instead hands it on when the worker's connection closes, and not before.)
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 600, minimum=60)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {}
    if BROKER_IS_RABBITMQ
    else {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
        # A broker outage must cost an approval a moment, not hang it: the sweeper re-dispatches
        # whatever could not be enqueued.
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
)
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = max(CELERY_TASK_TIME_LIMIT - 20, 1)
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be below CELERY_VISIBILITY_TIMEOUT_SECONDS, or Redis "
        "redelivers a task that is still running"
    )
if EXECUTION_BACKOFF_MAX_SECONDS >= CELERY_VISIBILITY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "EXECUTION_BACKOFF_MAX_SECONDS must be below CELERY_VISIBILITY_TIMEOUT_SECONDS: a retry "
        "waiting out its countdown is an unacknowledged message that Redis would redeliver"
    )
if APPROVAL_UNDO_SECONDS >= CELERY_VISIBILITY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "APPROVAL_UNDO_SECONDS must be below CELERY_VISIBILITY_TIMEOUT_SECONDS: an approval's "
        "task waits out the window as an unacknowledged message that Redis would redeliver"
    )
# With late acks a lost broker connection means the running tasks' messages will be delivered
# again; stop them rather than let two attempts overlap (the lease and the sweeper recover
# the stopped ones).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "soc")
# Callbacks wait on agents' servers: on a queue and worker of their own (the Procfile's
# `callbacks`), a slow receiver can never hold a worker process that executions need.
CALLBACK_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-callbacks"
# Report rollups (a day's rebuild reads the whole day) on theirs (the Procfile's `reports`): an
# execution never waits behind one.
REPORTS_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-reports"
CELERY_TASK_ROUTES = {
    "approvals.tasks.deliver_callback": {"queue": CALLBACK_QUEUE},
    "audit.tasks.rollup_day": {"queue": REPORTS_QUEUE},
    "audit.tasks.rollup_recent": {"queue": REPORTS_QUEUE},
}
if BROKER_IS_RABBITMQ:
    from kombu import Exchange, Queue

    # Quorum queues: replicated across the RabbitMQ cluster, so a message survives the loss of
    # the node that held it. A quorum queue has no global prefetch limit, so the worker sets
    # one per consumer (worker_detect_quorum_queues); with late acks and a prefetch of one, a
    # worker process holds one unfinished message, which RabbitMQ hands to another worker
    # the moment this one's connection drops (a kill -9 included).
    # A countdown (the undo window, a retry's backoff) cannot wait in the worker, which would
    # hold the queue's only prefetch slot: Celery's native delayed delivery parks the message
    # in RabbitMQ's own delay queues until it is due, and that needs a topic exchange.
    _EXCHANGE = Exchange(CELERY_TASK_DEFAULT_QUEUE, type="topic")
    CELERY_TASK_QUEUES = [
        Queue(name, _EXCHANGE, routing_key=name, queue_arguments={"x-queue-type": "quorum"})
        for name in (CELERY_TASK_DEFAULT_QUEUE, CALLBACK_QUEUE, REPORTS_QUEUE)
    ]
    CELERY_TASK_DEFAULT_EXCHANGE = CELERY_TASK_DEFAULT_QUEUE
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_TASK_DEFAULT_ROUTING_KEY = CELERY_TASK_DEFAULT_QUEUE
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"

# How often beat looks for a team due an attention check.
ATTENTION_CHECK_INTERVAL_SECONDS = env_float("ATTENTION_CHECK_INTERVAL_SECONDS", 60.0, minimum=5)
CELERY_BEAT_SCHEDULE = {
    # Ticks expire: those piled up while no worker ran are dropped instead of arriving in a
    # burst. A sweep tick keeps a minute's grace so that a long queue cannot starve the sweeper.
    "sweep-executions": {
        "task": "approvals.tasks.sweep",
        "schedule": SWEEP_INTERVAL_SECONDS,
        "options": {"expires": max(6 * SWEEP_INTERVAL_SECONDS, 60.0)},
    },
    # Attention checks (approvals.services.attention): one cheap count per team with checks on.
    "attention-checks": {
        "task": "approvals.tasks.attention_checks",
        "schedule": ATTENTION_CHECK_INTERVAL_SECONDS,
        "options": {"expires": ATTENTION_CHECK_INTERVAL_SECONDS},
    },
    "worker-heartbeat": {
        "task": "approvals.tasks.heartbeat",
        "schedule": WORKER_HEARTBEAT_INTERVAL_SECONDS,
        "options": {"expires": WORKER_HEARTBEAT_INTERVAL_SECONDS},
    },
    "report-rollups": {
        "task": "audit.tasks.rollup_recent",
        "schedule": ROLLUP_SWEEP_SECONDS,
        "options": {"expires": ROLLUP_SWEEP_SECONDS},
    },
}

if AUDIT_ANCHOR_URL:
    # A missed tick is not worth catching up: the next checkpoint covers the events since.
    CELERY_BEAT_SCHEDULE["audit-anchor"] = {
        "task": "audit.tasks.anchor",
        "schedule": AUDIT_ANCHOR_SECONDS,
        "options": {"expires": AUDIT_ANCHOR_SECONDS},
    }

# /metrics: with a token, only `Authorization: Bearer <token>`; without one, loopback only.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, and the request,
# proposal and execution the line concerns); text otherwise.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
# The worker keeps these settings' handlers instead of installing its own text format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"

LOGGING_CONFIG = "soc_console.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "soc_console.logs.ContextFilter"},
        "client_errors": {"()": "soc_console.logs.ClientErrorFilter"},
    },
    "formatters": {"json": {"()": "soc_console.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["context"],
            **({"formatter": "json"} if LOG_FORMAT == "json" else {}),
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # One line per agent request from the simulator drowns the worker's log; django-axes
    # writes two per sign-in (its failures and lockouts are warnings, and stay).
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # A refused request (403 and the other 4xx) is one warning line, no traceback.
        "django.request": {"filters": ["client_errors"]},
    },
}
