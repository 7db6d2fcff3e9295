"""Benchmarks. Each builds its own database and Redis keys, so throw-away secrets serve: the
console refuses to start without SECRET_KEY, API_KEY_PEPPER and AUDIT_KEY when DEBUG is off."""

from __future__ import annotations

import os
import secrets

for _name in ("SECRET_KEY", "API_KEY_PEPPER"):
    os.environ.setdefault(_name, secrets.token_hex(32))
# A fixed audit key keeps a reused benchmark database's chain (bench.reports) verifiable from
# one run to the next.
os.environ.setdefault("AUDIT_KEY", "bench-only-audit-key-0123456789abcdef")
