"""Benchmarks. Each builds its own database and Redis keys, so throw-away secrets serve: the
console refuses to start without SECRET_KEY and API_KEY_PEPPER when DEBUG is off."""

from __future__ import annotations

import os
import secrets

for _name in ("SECRET_KEY", "API_KEY_PEPPER"):
    os.environ.setdefault(_name, secrets.token_hex(32))
