"""Settings for the test suite: the product's settings with test defaults in the environment.

Tests get their own Redis database, channel prefix and Celery queue so that they never touch a
running console's data; the database defaults to the local PostgreSQL server, because locks,
triggers and percentiles only behave truly there.
"""

from __future__ import annotations

import os

from django.conf import global_settings

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/soc_console")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CHANNEL_PREFIX", "soc-test")
os.environ.setdefault("CELERY_QUEUE", "soc-test")
# No connection pool in the test process: pytest-django drops the test database at the end,
# and a pool's idle connections would keep it "in use by other users".
os.environ.setdefault("DATABASE_POOL_MAX", "0")
# The callback tests listen on 127.0.0.1; the refusal itself is tested with this turned off.
os.environ.setdefault("CALLBACK_ALLOW_PRIVATE_NETWORKS", "1")
# Live counts owed after a burst go out this soon: tests that wait for live updates to settle
# wait for these too.
os.environ.setdefault("LIVE_COUNTERS_SECONDS", "0.05")
os.environ.setdefault("LIVE_CONTEXT_SECONDS", "0.05")
# DEBUG is off, as in production, which refuses to start without secrets of its own. These are
# the suite's (its servers and workers inherit them); tests/core/test_production.py checks the
# refusal.
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("API_KEY_PEPPER", "tests-only-api-key-pepper-0123456789abcdef")
# Approvals run at once unless a test opens the undo window itself (tests of the undo do).
os.environ.setdefault("APPROVAL_UNDO_SECONDS", "0")
# The audit log's HMAC key; workers and servers the tests start inherit it, so that the events
# they append verify in the test process.
os.environ.setdefault("AUDIT_KEY", "test-only-audit-key-0123456789abcdef")

from soc_console.settings import *  # noqa: E402, F403

# The audit table refuses TRUNCATE unless this session setting is on and the session's role
# owns the table (or is a superuser); flushing the test database between transactional tests
# needs it. Only the test process's connections set it.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c soc.allow_audit_truncate=on"  # noqa: F405
    # A second connection to the test database, as a read replica would be: the replica test
    # (tests/audit/test_replica.py) sends reports there; the rest of the suite reads "default".
    DATABASES.setdefault(  # noqa: F405
        "replica",
        {**DATABASES["default"], "TEST": {"MIRROR": "default"}},  # noqa: F405
    )

# Test users' passwords are hashed with MD5: the production hasher (PBKDF2, a million rounds)
# takes about half a second of CPU a user, and the suite makes well over a thousand users. The
# production hashers stay listed, so that a hash made by a console process verifies here too;
# the browser tests' server runs the production settings, and their users are hashed for it
# (tests/browser/conftest.py).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *global_settings.PASSWORD_HASHERS,
]

# Pages rendered in the test process link plain static names: no collectstatic manifest is
# needed. The live server (tests/browser) serves collectstatic's hashed files as deployed.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
