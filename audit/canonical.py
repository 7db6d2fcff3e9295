"""The audit log's one JSON encoding and its one keyed hash.

An event's hash is taken over its canonical JSON, and the same text is what the database
stores. PostgreSQL's jsonb keeps numbers as exact decimals and prints them its own way, so
the canonical form is chosen to be a fixed point of the round trip: whatever the database
returns, parsed and encoded again here, gives back the bytes that were hashed.

- Keys sorted, no spaces, non-ASCII escaped: jsonb's own key order and spacing do not matter.
- `-0.0` is recorded as `0.0`: jsonb has no negative zero and would return `0.0` anyway.
- A float of 1e16 or more is recorded as the integer it equals: Python writes it with an
  exponent (`1e+16`) but jsonb returns its digits (`10000000000000000`), which parse as an
  integer. Small exponents (`1e-05`) come back as `0.00001`, which parses to the same float.
- NaN and ±infinity are refused: JSON cannot carry them.
- Text holding NUL or a lone surrogate is refused: jsonb cannot store it.
- Other values (UUIDs, datetimes, decimals) are recorded as their text.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings

# Deeper nesting than this is refused rather than risk a RecursionError when verifying.
MAX_DEPTH = 64
# About 3,600 digits: Python refuses to parse integers longer than 4,300 digits back.
MAX_INT_BITS = 12_000

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
encode = _ENCODER.encode  # the one encoder: for hashes, stored rows and verification alike
# How it writes a string (ASCII, escaped), for text put together from encoded parts.
quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class NotCanonical(ValueError):
    """A value the audit log cannot store exactly as it hashes it."""


def _text(value: str, where: str) -> str:
    if "\x00" in value:
        raise NotCanonical(f"{where}: text with a NUL character cannot be recorded")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotCanonical(
                f"{where}: text with a lone surrogate (\\u{ord(value[exc.start]):04x}) "
                "cannot be recorded"
            ) from exc
    return value


def canonical_data(value: Any, *, where: str = "data", depth: int = 0) -> Any:
    """`value` as the audit log records it (see the module's docstring), or NotCanonical."""
    if depth > MAX_DEPTH:
        raise NotCanonical(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        # A str subclass (a TextChoices status) is recorded as the plain text it holds.
        return _text(value if type(value) is str else str.__str__(value), where)
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise NotCanonical(f"{where}: integer too large to record")
        return int(value)  # an IntEnum or bool-like subclass becomes a plain number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonical(f"{where}: {value!r} is not a finite number")
        if value == 0.0:
            return 0.0  # and -0.0 too
        if abs(value) >= 1e16:
            return int(value)  # exact: every float this large is a whole number
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{where}: key {key!r} is not text")
            out[_text(str.__str__(key), where)] = canonical_data(
                item, where=f"{where}.{key}", depth=depth + 1
            )
        return out
    if isinstance(value, list | tuple):
        return [
            canonical_data(item, where=f"{where}[{i}]", depth=depth + 1)
            for i, item in enumerate(value)
        ]
    return _text(str(value), where)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value`: what is stored, and what hashes cover."""
    return encode(canonical_data(value))


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


@functools.lru_cache(maxsize=4)
def _pads(key: bytes) -> tuple[Any, Any]:
    if len(key) > 64:  # SHA-256's block size
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def keyed_hash(key: bytes | None = None) -> Callable[[bytes], str]:
    """HMAC-SHA256 under `key` (AUDIT_KEY by default), as hex.

    RFC 2104 with the two padded keys hashed once: verification hashes millions of events,
    and copying a prepared state is half the cost of `hmac.digest` starting afresh each time.
    """
    inner, outer = _pads(key if key is not None else settings.AUDIT_KEY.encode())

    def digest(message: bytes) -> str:
        hashed = inner.copy()
        hashed.update(message)
        wrapped = outer.copy()
        wrapped.update(hashed.digest())
        return wrapped.hexdigest()

    return digest


def mac(message: bytes) -> str:
    """HMAC-SHA256 under AUDIT_KEY: event hashes, checkpoints and verification runs."""
    return keyed_hash()(message)


def signature(purpose: str, payload: dict[str, Any]) -> str:
    """A signature over a record other than an event (a checkpoint, a verification run).

    The purpose prefixes the message, so that no signed record can pass for another kind, nor
    for an event (whose message starts with the previous event's 64 hex digits).
    """
    return mac(f"{purpose}\n".encode() + canonical_json(payload).encode())


def signature_matches(purpose: str, payload: dict[str, Any], claimed: str) -> bool:
    return hmac.compare_digest(signature(purpose, payload), claimed or "")
