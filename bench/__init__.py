"""Benchmark scripts: `python -m bench.NAME`."""

from __future__ import annotations

import os

# The console refuses to start with DEBUG off and no audit key. A fixed one keeps a reused
# benchmark database's chain verifiable from one run to the next.
os.environ.setdefault("AUDIT_KEY", "bench-only-audit-key-0123456789abcdef")
