"""The grammar of targets: what each kind of target may look like, as regular expressions.

`PATTERNS` is published in the OpenAPI schema (approvals/contract.py) and checked first by
agents/targets.py, so the schema and the API accept exactly the same strings. Written for
Python's re and ECMAScript alike (the schema's dialect): classes, groups, bounded repeats and
lookaheads only.
"""

from __future__ import annotations

import re
import string

from soc_console.contract import BIDI_CONTROL_CLASS, WHITESPACE_CLASS

_DIGITS = string.digits + "abcdef"


def _digit_class(low: int, high: int, base: int) -> str:
    """The digits low..high of `base`, hex letters in either case."""
    chars = "".join(
        _DIGITS[d] + (_DIGITS[d].upper() if d > 9 else "") for d in range(low, high + 1)
    )
    return chars if len(chars) == 1 else f"[{chars}]"


def _up_to(limit: int, base: int) -> str:
    """The numbers 1..limit in `base`, without leading zeros."""
    digits = ""
    while limit:
        limit, d = divmod(limit, base)
        digits = _DIGITS[d] + digits
    any_digit = _digit_class(0, base - 1, base)
    options = []
    if len(digits) > 1:  # shorter numbers
        tail = f"{any_digit}{{0,{len(digits) - 2}}}" if len(digits) > 2 else ""
        options.append(_digit_class(1, base - 1, base) + tail)
    for position, digit in enumerate(digits):  # as long as the limit, and below it here
        value = _DIGITS.index(digit)
        lowest = 1 if position == 0 else 0
        if value > lowest:
            rest = len(digits) - position - 1
            prefix = "".join(
                _digit_class(_DIGITS.index(d), _DIGITS.index(d), base) for d in digits[:position]
            )
            tail = f"{any_digit}{{{rest}}}" if rest > 1 else (any_digit if rest else "")
            options.append(prefix + _digit_class(lowest, value - 1, base) + tail)
    options.append("".join(_digit_class(_DIGITS.index(d), _DIGITS.index(d), base) for d in digits))
    return "(?:" + "|".join(options) + ")"


def _number(limit: int) -> str:
    """One part of an inet_aton address up to `limit`: decimal without a leading zero, or hex
    after 0x. A part with a leading zero (`010`) is octal to inet_aton and decimal to people
    and to Python's ipaddress: it is not in the grammar, and agents/targets.py refuses it
    with both readings."""
    return f"(?:0[xX](?:0*{_up_to(limit, 16)}|0+)|{_up_to(limit, 10)}|0)"


_P8, _P16, _P24, _P32 = (_number(2**bits - 1) for bits in (8, 16, 24, 32))
# Every spelling inet_aton reads the same way a person does: 1 to 4 parts, the last filling
# the bytes left.
IPV4 = rf"(?:(?:{_P8}\.){{3}}{_P8}|(?:{_P8}\.){{2}}{_P16}|{_P8}\.{_P24}|{_P32})"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}(?:\.{_OCTET}){{3}})"
# RFC 3986's IPv6address, which is what Python's ipaddress reads (no zone).
IPV6 = (
    rf"(?:(?:{_H16}:){{6}}{_LS32}|::(?:{_H16}:){{5}}{_LS32}|(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}"
    rf"|(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}"
    rf"|(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}"
    rf"|(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}"
    rf"|(?:(?:{_H16}:){{0,6}}{_H16})?::)"
)
_PREFIX4 = r"(?:3[0-2]|[12]?[0-9])"
_PREFIX6 = r"(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A last label that is a number makes a broken address, not a name (`host.10`, `a.0x1`).
_NUMERIC = r"(?:[0-9]+|0[xX][0-9A-Fa-f]*)"


def _dns_name(end: str, *, dotted: bool) -> str:
    """A host name of at most 253 characters followed by `end` (a lookahead), with at least
    two labels when `dotted`."""
    labels = rf"(?:{_LABEL}\.)+" if dotted else rf"(?:{_LABEL}\.)*"
    return rf"(?=[A-Za-z0-9.-]{{1,253}}{end}){labels}(?!{_NUMERIC}{end}){_LABEL}"


_END_OF_NAME = r"\.?$"  # an optional root dot, then the end
_BEFORE_USER = r"\\"  # the backslash of DOMAIN\user
_NAME = _dns_name(_END_OF_NAME, dotted=False) + r"\.?"
_LOCAL = r"[A-Za-z0-9._%+-]{1,64}"
_NETBIOS = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
_UPN_DOMAIN = rf"(?:{_NETBIOS}|{_dns_name(_END_OF_NAME, dotted=True)})\.?"
_DOWN_LEVEL_DOMAIN = rf"(?:{_NETBIOS}|{_dns_name(_BEFORE_USER, dotted=True)})"

_ID_PART = rf"[^<>@\x00-\x1f\x7f-\x9f{BIDI_CONTROL_CLASS}{WHITESPACE_CLASS}]{{1,200}}"

PATTERNS = {
    "ip": rf"^(?:{IPV4}(?:/{_PREFIX4})?|{IPV6}(?:/{_PREFIX6})?)$",
    "host": rf"^(?:{IPV4}|{IPV6}|{_NAME})$",
    "user": rf"^(?:{_LOCAL}@{_UPN_DOMAIN}|{_DOWN_LEVEL_DOMAIN}\\{_LOCAL}|{_LOCAL})$",
    "mailbox_address": rf"^{_LOCAL}@{_dns_name(_END_OF_NAME, dotted=True)}\.?$",
    # A message id: no space, `<`, `>` or `@` on either side of its one `@`, nor a control
    # character (an escape sequence would reach the audit log and every console that shows
    # it) or a bidirectional control.
    "message_id": rf"^<{_ID_PART}@{_ID_PART}>$",
    # Ticket ids (SOC-1234) are alert ids too.
    "ticket": r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$",
}
RE = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}
IPV4_RE = re.compile(rf"^{IPV4}$")
IPV6_RE = re.compile(rf"^{IPV6}$")
NETBIOS_RE = re.compile(rf"^{_NETBIOS}$")
MESSAGE_ID_RE = re.compile(PATTERNS["message_id"])
