"""API keys: `soc_<prefix>_<secret>`, stored as the prefix plus an HMAC of the whole key."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

KEY_SCHEME = "soc"


def digest(raw_key: str) -> str:
    return hmac.new(settings.API_KEY_PEPPER.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


def generate() -> tuple[str, str, str]:
    """Return (raw key, prefix, digest). The raw key is shown once and never stored."""
    prefix = secrets.token_hex(6)
    raw = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return raw, prefix, digest(raw)


def split_prefix(raw_key: str) -> str | None:
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1]:
        return None
    return parts[1]


def matches(raw_key: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(raw_key), stored_digest)
