"""One identity per target: the canonical form of every name an agent can give a target.

A guardrail that compares spellings can be walked around: `dc01` is `dc01.corp.example`,
`::ffff:10.0.0.10` is `10.0.0.10`, `CORP\\ceo` is `ceo@corp.example`, and `2130706433` is
`127.0.0.1` to every resolver that reads numbers the way inet_aton does. So each target is
turned into an `Identity` once, before anything looks at it: routing, the inventory match,
the idempotency hash and the connector all see the same canonical value.

A spelling that names two addresses is refused instead: a number with a leading zero
(`010.0.0.10`) is octal to inet_aton and most resolvers (8.0.0.8) and decimal to people and
to Python's ipaddress (10.0.0.10), so whichever reading the console chose, the agent that
meant the other would see another host acted on. The refusal gives both readings.

`canonical(kind, raw)` is a pure function of the catalogue's target kind and the raw text
(plus the NetBIOS→DNS domain mappings, TARGET_DOMAINS by default). It raises `TargetError`,
whose message completes the sentence "the target …", for anything it cannot read.

Targets are written in ASCII. What each kind accepts is one grammar (agents/grammar.py),
published as regular expressions that the OpenAPI schema states: a target is checked against
it first and only then read, so the schema and the API accept exactly the same strings. Any
other character is refused: a fullwidth or Cyrillic look-alike cannot dodge a match because it
cannot get in. A name that is really internationalised is written as its A-labels (`xn--…`);
those are decoded and matched by what they look like (`skeleton`, agents/lookalikes.py), so a
look-alike written that way matches the inventory entry it imitates, while the connector gets
the A-label. A user's local part written as an A-label (`xn--co-nlc@corp.example`) is read the
same way.

What an identity holds:

- `value`: the canonical spelling, stored on the proposal and sent to the connector;
- `key`: what the inventory is matched on: the value, with A-labels replaced by the skeleton
  of the name they stand for;
- `label`: the first label of a host name or the local part of a principal, for the
  fail-closed short-name match;
- `short`: the name carries no domain (`dc01`, `ceo`, or `CORP\\ceo` when CORP is not
  mapped), so it may be any inventoried name with that label;
- `ranges`: for addresses and networks, the span of addresses covered, as 32-digit hex
  strings in one IPv6 space where IPv4 lives at ::ffff:0:0/96, so that containment is a string
  comparison in any database.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .grammar import (
    IPV4_RE,
    IPV6_RE,
    MESSAGE_ID_RE,
    NETBIOS_RE,
    RE,
)
from .lookalikes import skeleton


class TargetError(ValueError):
    pass


class Namespace(StrEnum):
    """What kind of name an identity is; the inventory is matched within one namespace."""

    IP = "ip"  # an address or a network
    HOST = "host"  # a DNS host name
    USER = "user"  # a user principal or a mailbox address
    MESSAGE = "message"  # a mail message id: never an inventoried asset
    TICKET = "ticket"  # a ticket or alert id: never an inventoried asset


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Identity:
    namespace: Namespace
    value: str
    key: str
    label: str = ""
    short: bool = False
    ranges: tuple[tuple[str, str], ...] = field(default=())
    network: IPNetwork | None = None

    @property
    def address(self) -> IPAddress | None:
        """The one address an IP identity names, or None (a network, or not an address)."""
        if self.network is None or self.network.num_addresses != 1:
            return None
        return self.network.network_address

    def host_prefixes(self) -> list[str]:
        """`dc01`, `dc01.corp`, `dc01.corp.example`: the names an inventoried entry that is
        this one, or a shorter spelling of it, may have."""
        labels = self.key.split(".")
        return [".".join(labels[: n + 1]) for n in range(len(labels))]


# --- addresses ------------------------------------------------------------------------------

_V4_IN_V6 = 0xFFFF << 32  # IPv4 lives at ::ffff:0:0/96 in the ranges
_ALL_V4 = (f"{_V4_IN_V6:032x}", f"{_V4_IN_V6 | 0xFFFFFFFF:032x}")
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
COMPATIBLE = ipaddress.IPv6Network("::/96")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# Each way an IPv6 address carries an IPv4 one: (prefix, where the IPv4 bits end, counted from
# the right). 6to4 puts them right after its 16-bit prefix.
_EMBEDDINGS = ((MAPPED, 0), (COMPATIBLE, 0), (NAT64, 0), (SIX_TO_FOUR, 80))

_HEX = frozenset(string.hexdigits)
_OCTAL = frozenset(string.octdigits)
_DECIMAL = frozenset(string.digits)


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address that inet_aton (and so getaddrinfo, and curl, and most connectors)
    reads in `text`, or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes: `127.1`, `2130706433`, `0x7f000001` and `0177.0.0.01` are all 127.0.0.1.
    Exact, to say what a resolver would do; targets with an octal part are refused before they
    are read (`_leading_zero_problem`).
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base, allowed = part[2:], 16, _HEX
        elif len(part) > 1 and part[0] == "0":
            digits, base, allowed = part[1:], 8, _OCTAL
        else:
            digits, base, allowed = part, 10, _DECIMAL
        # Checked by hand: int() would also take "+1", "1_0" and non-ASCII digits.
        if not digits or not set(digits) <= allowed:
            return None
        numbers.append(int(digits, base))
    *leading, last = numbers
    if any(n > 0xFF for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for position, number in enumerate(leading):
        value |= number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


# A dotted part as inet_aton may read it (decimal, octal or hex), and one with a leading zero.
_NUMBER_PART = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_PADDED_PART = re.compile(r"0[0-9]+")


def _leading_zero_problem(text: str) -> str | None:
    """Why an address written with a leading zero in a part is refused, or None when it has
    none: the two addresses it may be, octal as resolvers read it and decimal as people do.

    Looks at the IPv4 text wherever it is: alone (`010.0.0.10`, `0010`), before a prefix
    (`010.0.0.0/8`) or carried in IPv6 (`::ffff:010.0.0.10`). A lone `0` and hex parts
    (`0x0a`) read the same to everyone and are not concerned.
    """
    address, slash, prefix = text.partition("/")
    head, colon, v4 = address.rpartition(":")
    parts = v4.split(".")
    if colon and len(parts) != 4:  # IPv6 carries IPv4 only as a dotted quad
        return None
    if len(parts) > 4 or not all(_NUMBER_PART.fullmatch(part) for part in parts):
        return None
    if not any(_PADDED_PART.fullmatch(part) for part in parts):
        return None
    octal = inet_aton(v4)
    decimal = inet_aton(
        ".".join(
            part.lstrip("0") or "0" if _PADDED_PART.fullmatch(part) else part for part in parts
        )
    )
    if octal is None and decimal is None:
        return (
            f"{text!r} is no address: a part with a leading zero is octal to resolvers and "
            "decimal to people, and neither reads an address in it. Write the address "
            "without leading zeros"
        )

    def reading(address: ipaddress.IPv4Address | None) -> str:
        if address is None:
            return "which read no address in it"
        return f"{head}{colon}{address}{slash}{prefix}"

    # Refused even where both readings agree (`10.0.0.07`): a rule on how the address is
    # written is one an agent can follow without working out which parts would differ.
    if octal == decimal:
        return (
            f"{text!r} has a part with a leading zero, octal to resolvers ({reading(octal)}) "
            f"and decimal to people ({reading(decimal)}), the same address here. Write the "
            "address without leading zeros"
        )
    return (
        f"{text!r} is ambiguous: a part with a leading zero is octal to resolvers "
        f"({reading(octal)}) and decimal to people ({reading(decimal)}). Write the address "
        "without leading zeros"
    )


def _unembed(network: IPNetwork) -> IPNetwork:
    """An IPv6 network that only carries IPv4 addresses, as that IPv4 network."""
    if network.version != 6:
        return network
    for prefix, shift in _EMBEDDINGS:
        if not network.subnet_of(prefix):  # type: ignore[arg-type]
            continue
        if prefix is COMPATIBLE and network.prefixlen == 128 and int(network.network_address) < 2:
            return network  # :: and ::1 are IPv6's own unspecified and loopback addresses
        # The prefix is followed by the 32 IPv4 bits; a 6to4 /48 or longer is one IPv4 site.
        v4_prefix = min(32, network.prefixlen - prefix.prefixlen)
        value = (int(network.network_address) >> shift) & 0xFFFFFFFF
        return ipaddress.IPv4Network((value, v4_prefix), strict=False)
    return network


def _span(network: IPNetwork) -> tuple[str, str]:
    base = _V4_IN_V6 if network.version == 4 else 0
    low = base | int(network.network_address)
    high = base | int(network.broadcast_address)
    return f"{low:032x}", f"{high:032x}"


IP_HINT = "must be an IPv4 or IPv6 address or CIDR network, without a zone id"


def _ip_identity(network: IPNetwork) -> Identity:
    network = _unembed(network)
    # A host route (/32, /128) is the address itself.
    value = str(network.network_address) if network.num_addresses == 1 else str(network)
    ranges = [_span(network)]
    if network.version == 6 and any(network.supernet_of(p) for p, _ in _EMBEDDINGS):
        # A network around a whole embedding prefix (::/0, 2000::/3) reaches every IPv4 address.
        ranges.append(_ALL_V4)
    return Identity(Namespace.IP, value, value, ranges=tuple(ranges), network=network)


def _address(text: str) -> IPAddress:
    """An address the grammar admitted, as its kind reads it."""
    if ":" in text:
        return ipaddress.IPv6Address(text)
    address = inet_aton(text)
    if address is None:  # the grammar and the reader disagree: refuse rather than guess
        raise TargetError(IP_HINT)
    return address


def _ip(text: str) -> Identity:
    ambiguous = _leading_zero_problem(text)
    if ambiguous:
        raise TargetError(ambiguous)
    if not RE["ip"].fullmatch(text):
        raise TargetError(IP_HINT)
    address_text, slash, prefix = text.partition("/")
    address = _address(address_text)
    bits = int(prefix) if slash else address.max_prefixlen
    return _ip_identity(ipaddress.ip_network((address, bits), strict=False))


# --- host names -----------------------------------------------------------------------------


def _label_key(label: str) -> str:
    """How one lower-case label is matched: an A-label by the skeleton of what it stands for."""
    if not label.startswith("xn--"):
        return label
    try:
        return skeleton(label[4:].encode("ascii").decode("punycode"))
    except UnicodeError:
        return label  # not punycode after all: it stands for nothing else


HOST_HINT = "must be a host name such as ws-0142.corp.example, or an address"
ASCII_HINT = "must be written in ASCII (an internationalised name as its xn-- A-labels)"


def _name(text: str) -> Identity:
    """A host name the grammar admitted."""
    value = text.lower().removesuffix(".")  # the root: dc01.corp.example. is dc01.corp.example
    key = ".".join(_label_key(label) for label in value.split("."))
    # From the key: an A-label may stand for more than one label (`dc01．corp`).
    return Identity(Namespace.HOST, value, key, label=key.split(".")[0], short="." not in key)


def _host(text: str) -> Identity:
    if not text.isascii():
        raise TargetError(ASCII_HINT)
    ambiguous = _leading_zero_problem(text)
    if ambiguous:
        raise TargetError(ambiguous)
    if not RE["host"].fullmatch(text):
        raise TargetError(HOST_HINT)
    # A number is an address to every resolver (`10.0.0.10`, `0x0a00000a`, `::1`): it is
    # matched as the address it is, never as a name that happens to be digits.
    if IPV4_RE.fullmatch(text) or IPV6_RE.fullmatch(text):
        return _ip_identity(ipaddress.ip_network(_address(text)))
    return _name(text)


# --- principals -----------------------------------------------------------------------------

USER_HINT = "must be a user principal such as jdoe@corp.example, CORP\\jdoe or jdoe"
MAILBOX_HINT = "must be a mailbox address or a message id such as <abc123@mail.example>"


def _principal(local: str, domain: str, domains: Mapping[str, str]) -> Identity:
    """A user name and its domain (a NetBIOS or DNS name, "" for none) the grammar admitted.

    A local part written as an A-label (`xn--co-nlc`, `cеo` with a Cyrillic е) is matched
    by what it looks like, as a host name's labels are. Nothing encodes a mailbox's local part
    that way, so such a name is either an ASCII account that happens to start with `xn--` or
    one written to look like another; reading it as its look-alike can only add matches (and
    so humans), never lose one. The account acted on is still the one written.

    A sub-address (`ceo+alerts`) is matched as the account it is delivered to (`ceo`), for the
    same reason: mail systems deliver `ceo+anything@` to `ceo@`, and reading it so can only
    add matches. Only the key drops the tag; the value keeps it.
    """
    name = local.lower()
    base, plus, _tag = name.partition("+")
    key = _label_key(base if plus and base else name)
    domain = domain.lower().removesuffix(".")
    if not domain:
        return Identity(Namespace.USER, name, key, label=key, short=True)
    if NETBIOS_RE.fullmatch(domain):
        suffix = domains.get(domain)
        if suffix is None:
            # A NetBIOS domain nobody mapped may stand for any DNS domain: only the name is
            # known.
            return Identity(Namespace.USER, f"{domain}\\{name}", key, label=key, short=True)
        domain = suffix
    host = _name(domain)
    return Identity(Namespace.USER, f"{name}@{host.value}", f"{key}@{host.key}", label=key)


def _user(text: str, domains: Mapping[str, str]) -> Identity:
    if not text.isascii():
        raise TargetError(ASCII_HINT)
    if not RE["user"].fullmatch(text):
        raise TargetError(USER_HINT)
    if "\\" in text:  # a down-level logon name: DOMAIN\user
        domain, _, local = text.partition("\\")
        return _principal(local, domain, domains)
    local, _, domain = text.partition("@")
    return _principal(local, domain, domains)


def _mailbox(text: str, domains: Mapping[str, str]) -> Identity:
    if MESSAGE_ID_RE.fullmatch(text):
        # Message ids are compared as sent: their left part is case-sensitive.
        return Identity(Namespace.MESSAGE, text, text)
    if not text.isascii():
        raise TargetError(ASCII_HINT)
    if not RE["mailbox_address"].fullmatch(text):
        raise TargetError(MAILBOX_HINT)
    local, _, domain = text.partition("@")
    return _principal(local, domain, domains)


# --- tickets --------------------------------------------------------------------------------


def _ticket(text: str) -> Identity:
    if RE["ticket"].fullmatch(text):
        return Identity(Namespace.TICKET, text, text)
    raise TargetError("must be a ticket or alert id such as SOC-1234")


# --- the one entry point --------------------------------------------------------------------

MAX_LENGTH = 255
KINDS = ("ip", "host", "user", "mailbox", "ticket")


def canonical(kind: str, raw: object, *, domains: Mapping[str, str] | None = None) -> Identity:
    """The identity of a target of the catalogue's `kind` ("ip", "host", "user", "mailbox",
    "ticket"); `domains` maps NetBIOS domain names to DNS suffixes (TARGET_DOMAINS)."""
    if not isinstance(raw, str) or not raw.strip():
        raise TargetError("must be a non-empty string")
    if len(raw) > MAX_LENGTH:
        raise TargetError(f"must be at most {MAX_LENGTH} characters")
    text = raw.strip()
    if kind == "ip":
        if not text.isascii():
            raise TargetError(ASCII_HINT)
        return _ip(text)
    if kind == "host":
        return _host(text)
    if kind in ("user", "mailbox"):
        mapping = _domains() if domains is None else domains
        return _user(text, mapping) if kind == "user" else _mailbox(text, mapping)
    if kind == "ticket":
        return _ticket(text)
    raise ValueError(f"unknown target kind {kind!r}")


# An asset's kind in the inventory -> the target kind its identifier is read as.
ASSET_KINDS = {"host": "host", "ip": "ip", "user": "user", "mailbox": "mailbox"}


def of_asset(asset_kind: str, raw: str, *, alias: bool = False) -> Identity:
    """The identity of an inventory name: an asset's identifier or, with `alias`, one of its
    other names. Any asset may be known by an address or a network too; a user's or a
    mailbox's other names may be down-level or bare names."""
    if alias:
        try:
            return canonical("ip", raw)
        except TargetError:
            pass
        if asset_kind == "mailbox":
            return canonical("user", raw)
    return canonical(ASSET_KINDS[asset_kind], raw)


def _domains() -> Mapping[str, str]:
    from django.conf import settings

    return settings.TARGET_DOMAINS


def alias_columns(identity: Identity) -> dict[str, str | bool]:
    """How an inventory name is stored (agents.AssetAlias) so that `canonical` targets find it."""
    if identity.namespace not in (Namespace.IP, Namespace.HOST, Namespace.USER):
        raise TargetError("is not a name an asset can have")
    first, last = identity.ranges[0] if identity.ranges else ("", "")
    return {
        "namespace": identity.namespace.value,
        "value": identity.value,
        "key": identity.key,
        "label": identity.label,
        "first": first,
        "last": last,
        "network": first != last,
    }
