"""One identity per target: the canonical form of every name an agent can give a target.

A guardrail that compares spellings can be walked around: `dc01` is `dc01.corp.example`,
`::ffff:10.0.0.10` is `10.0.0.10`, `CORP\\ceo` is `ceo@corp.example`, and `2130706433` is
`127.0.0.1` to every resolver that reads numbers the way inet_aton does. So each target is
turned into an `Identity` once, before anything looks at it: routing, the inventory match,
the idempotency hash and the connector all see the same canonical value.

`canonical(kind, raw)` is a pure function of the catalogue's target kind and the raw text
(plus the NetBIOS→DNS domain mappings, TARGET_DOMAINS by default). It raises `TargetError`,
whose message completes the sentence "the target …", for anything it cannot read.

What an identity holds:

- `value`: the canonical spelling, stored on the proposal and sent to the connector;
- `key`: what the inventory is matched on. For host names and principals it is the value's
  *skeleton*: Unicode compatibility forms folded (NFKC: fullwidth, mathematical and circled
  letters), case folded, combining marks and invisible format characters dropped, and letters
  of other scripts that look like ASCII ones (Cyrillic `с`, Greek `ο`, …) replaced by them.
  Punycode labels (`xn--…`) are decoded first, so an A-label cannot hide a look-alike either;
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
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import idna


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


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return inet_aton(text)


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


def _ip(text: str) -> Identity:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    address_text, slash, prefix_text = text.partition("/")
    # A zone (fe80::1%eth0) says which link, not which address.
    address_text = address_text.partition("%")[0]
    address = _address(address_text)
    if address is None:
        raise TargetError("must be an IPv4 or IPv6 address or CIDR network")
    try:
        if slash:
            network = ipaddress.ip_network(f"{address}/{prefix_text}", strict=False)
        else:
            network = ipaddress.ip_network(address)
    except ValueError as exc:
        raise TargetError("must be an IPv4 or IPv6 address or CIDR network") from exc
    network = _unembed(network)
    # A host route (/32, /128) is the address itself.
    value = str(network.network_address) if network.num_addresses == 1 else str(network)
    ranges = [_span(network)]
    if network.version == 6 and any(network.supernet_of(p) for p, _ in _EMBEDDINGS):
        # A network around a whole embedding prefix (::/0, 2000::/3) reaches every IPv4 address.
        ranges.append(_ALL_V4)
    return Identity(Namespace.IP, value, value, ranges=tuple(ranges), network=network)


# --- host names -----------------------------------------------------------------------------

LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Full stops that IDNA treats as dots (NFKC folds the fullwidth one, not the ideographic).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

# Letters of other scripts that are drawn like an ASCII letter, by case (applied before case
# folding, so that Greek capital Ν stays N while small ν becomes v). A curated subset of the
# look-alikes in Unicode's confusables data: Cyrillic, Greek, Armenian and Latin extensions,
# the scripts seen in homograph attacks on Latin-script names. A name whose skeleton is still
# not ASCII matches no ASCII inventory name and is, like any unknown target, treated as
# UNKNOWN_ASSET_CRITICALITY.
_LOOKALIKES = {
    # Cyrillic capitals
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ѕ": "S", "І": "I", "Ӏ": "I",
    "Ј": "J", "Ԛ": "Q", "Ԝ": "W", "Һ": "H", "Ԁ": "D", "Ԍ": "G", "Ɩ": "I",
    # Cyrillic small letters
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "ү": "y", "х": "x",
    "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ь": "b", "ѵ": "v", "ɡ": "g",
    # Greek capitals
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϳ": "J",
    # NFKC turns the lunate sigmas (Ϲ ϲ, drawn like C c) into Σ and ς: those stand for C too.
    "Σ": "C", "σ": "c", "ς": "c",
    # Greek small letters
    "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ϳ": "j", "γ": "y", "ω": "w", "ε": "e",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q", "ա": "w", "ե": "t",
    "Օ": "O", "Ս": "U",
    # Latin letters outside ASCII drawn like ASCII ones
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ĸ": "k", "ʋ": "u", "ℓ": "l",
}  # fmt: skip
_SKELETON = str.maketrans(_LOOKALIKES)


def skeleton(text: str) -> str:
    """What a name looks like: the form compared when matching the inventory.

    Takes the name before case folding, so that a capital's look-alike is judged as a capital.
    """
    folded = unicodedata.normalize("NFKC", text).translate(_DOTS)
    if folded.isascii():
        return folded.casefold()
    drawn = unicodedata.normalize("NFD", folded.translate(_SKELETON)).translate(_SKELETON)
    # Accents and invisible joiners do not make another name to the eye.
    bare = "".join(c for c in drawn if unicodedata.category(c) not in ("Mn", "Me", "Cf"))
    return unicodedata.normalize("NFC", bare).casefold().translate(_SKELETON)


def _label_forms(label: str) -> tuple[str, str | None]:
    """The A-label sent over the wire for one case-folded DNS label, and the U-label that an
    A-label stands for (None when the label was not punycode)."""
    if label.isascii():
        if label.startswith("xn--"):
            try:
                return label, idna.decode(label)
            except idna.IDNAError as exc:
                raise TargetError(f"has a label {label!r} that is not valid punycode") from exc
        return label, None
    try:
        return idna.encode(label, uts46=True).decode("ascii"), None
    except idna.IDNAError as exc:
        raise TargetError(f"has a label {label!r} that is not a valid host name label") from exc


HOST_HINT = "must be a host name such as ws-0142.corp.example, or an address"
# The last label of a name is never a number: `host.10` is a broken address, not a name.
NUMERIC_LABEL_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _host(text: str) -> Identity:
    shown = unicodedata.normalize("NFKC", text).translate(_DOTS)
    if shown.endswith("."):
        shown = shown[:-1]  # the root: dc01.corp.example. is dc01.corp.example
    folded = shown.casefold()
    # A number is an address to every resolver (`10.0.0.10`, `0x0a00000a`, `[::1]`): match it
    # as the address it is, never as a name that happens to be digits.
    if folded.startswith("[") or ":" in folded or inet_aton(folded) is not None:
        try:
            return _ip(folded)
        except TargetError as exc:
            raise TargetError(HOST_HINT) from exc
    labels, shown_labels = folded.split("."), shown.split(".")
    if len(folded) > 253 or len(labels) != len(shown_labels):
        raise TargetError(HOST_HINT)
    if NUMERIC_LABEL_RE.match(labels[-1]):
        raise TargetError(HOST_HINT)
    a_labels, looks = [], []
    for label, shown_label in zip(labels, shown_labels, strict=True):
        if not label:
            raise TargetError(HOST_HINT)
        a_label, decoded = _label_forms(label)
        if not LABEL_RE.match(a_label):
            raise TargetError(HOST_HINT)
        a_labels.append(a_label)
        looks.append(skeleton(decoded if decoded is not None else shown_label))
    value = ".".join(a_labels)
    if len(value) > 253:
        raise TargetError(HOST_HINT)
    key = ".".join(looks)
    return Identity(Namespace.HOST, value, key, label=looks[0], short=len(a_labels) == 1)


# --- principals -----------------------------------------------------------------------------

LOCAL_RE = re.compile(r"^[a-z0-9._%+\-]{1,64}$")
NETBIOS_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
USER_HINT = "must be a user principal such as jdoe@corp.example, CORP\\jdoe or jdoe"
MAILBOX_HINT = "must be a mailbox address or a message id such as <abc123@mail.example>"
MESSAGE_ID_RE = re.compile(r"^<[^<>\s@]{1,200}@[^<>\s@]{1,200}>$")


def _principal(local: str, domain: str, *, hint: str, domains: Mapping[str, str]) -> Identity:
    """`local` and `domain` as written (after NFKC), `domain` "" when there is none."""
    look = skeleton(local)
    name = local.casefold()
    if not LOCAL_RE.match(look) or not name.isprintable():
        raise TargetError(hint)
    domain = domain.casefold()
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        return Identity(Namespace.USER, name, look, label=look, short=True)
    if "." not in domain and domain not in domains:
        if not NETBIOS_RE.match(domain):
            raise TargetError(hint)
        # A NetBIOS domain nobody mapped may stand for any DNS domain: only the name is known.
        return Identity(Namespace.USER, f"{domain}\\{name}", look, label=look, short=True)
    try:
        host = _host(domains.get(domain, domain))
    except TargetError as exc:
        raise TargetError(hint) from exc
    if host.namespace is not Namespace.HOST:
        raise TargetError(hint)
    return Identity(Namespace.USER, f"{name}@{host.value}", f"{look}@{host.key}", label=look)


def _user(text: str, domains: Mapping[str, str]) -> Identity:
    shown = unicodedata.normalize("NFKC", text)
    if "\\" in shown:
        # A down-level logon name, DOMAIN\user: the domain a NetBIOS name (or a DNS one).
        domain, _, local = shown.partition("\\")
        if not domain or "\\" in local or "@" in local:
            raise TargetError(USER_HINT)
        return _principal(local, domain, hint=USER_HINT, domains=domains)
    local, at, domain = shown.rpartition("@")
    if not at:
        return _principal(shown, "", hint=USER_HINT, domains=domains)  # a bare name
    if not domain:
        raise TargetError(USER_HINT)
    return _principal(local, domain, hint=USER_HINT, domains=domains)


def _mailbox(text: str, domains: Mapping[str, str]) -> Identity:
    if MESSAGE_ID_RE.match(text):
        # Message ids are compared as sent: their left part is case-sensitive.
        return Identity(Namespace.MESSAGE, text, text)
    shown = unicodedata.normalize("NFKC", text)
    local, at, domain = shown.rpartition("@")
    if not at or "." not in domain.rstrip("."):
        raise TargetError(MAILBOX_HINT)
    return _principal(local, domain, hint=MAILBOX_HINT, domains=domains)


# --- tickets --------------------------------------------------------------------------------

TICKET_RE = re.compile(r"^[A-Z][A-Z0-9]{1,15}-\d{1,10}$")
ALERT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def _ticket(text: str) -> Identity:
    if TICKET_RE.match(text) or ALERT_RE.match(text):
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
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in raw):
        raise TargetError("must not contain control characters")
    text = raw.strip()
    if kind == "ip":
        folded = unicodedata.normalize("NFKC", text)
        if not folded.isascii():
            raise TargetError("must be an IPv4 or IPv6 address or CIDR network")
        return _ip(folded)
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
    other names. Any asset may be known by an address too; a user's or a mailbox's other
    names may be down-level or bare names."""
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
