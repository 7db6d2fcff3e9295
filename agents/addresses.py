"""Addresses and networks as targets: every spelling a resolver reads (`inet_aton`), IPv4
carried in IPv6, host routes, and the refusal of a part with a leading zero, which names two
addresses. `canonical_ip` is what `agents.targets.canonical` runs for the `ip` kind."""

from __future__ import annotations

import ipaddress
import re
import string

from .grammar import RE
from .identity import Identity, IPAddress, IPNetwork, Namespace, TargetError

_V4_IN_V6 = 0xFFFF << 32  # IPv4 lives at ::ffff:0:0/96 in the ranges
_ALL_V4 = (f"{_V4_IN_V6:032x}", f"{_V4_IN_V6 | 0xFFFFFFFF:032x}")
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
COMPATIBLE = ipaddress.IPv6Network("::/96")
TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT's IPv4-translated (RFC 6145)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# NAT64's prefix for local use (RFC 8215): each network takes a prefix inside it, most often a
# /96 with the IPv4 address in its last 32 bits, which is how an address in it is read.
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# Each way an IPv6 address carries an IPv4 one: (prefix, the bit where the IPv4 bits start,
# counted from the left). 6to4 puts them right after its 16-bit prefix.
_EMBEDDINGS = (
    (MAPPED, 96),
    (COMPATIBLE, 96),
    (TRANSLATED, 96),
    (NAT64, 96),
    (LOCAL_NAT64, 96),
    (SIX_TO_FOUR, 16),
)

_HEX = frozenset(string.hexdigits)
_OCTAL = frozenset(string.octdigits)
_DECIMAL = frozenset(string.digits)


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address that inet_aton (and so getaddrinfo, and curl, and most connectors)
    reads in `text`, or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes: `127.1`, `2130706433`, `0x7f000001` and `0177.0.0.01` are all 127.0.0.1.
    Exact, to say what a resolver would do; targets with an octal part are refused before they
    are read (`leading_zero_problem`).
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


def leading_zero_problem(text: str) -> str | None:
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
    for prefix, start in _EMBEDDINGS:
        if not network.subnet_of(prefix):  # type: ignore[arg-type]
            continue
        if prefix is COMPATIBLE and network.prefixlen == 128 and int(network.network_address) < 2:
            return network  # :: and ::1 are IPv6's own unspecified and loopback addresses
        if network.prefixlen < start:
            # Wider than one IPv4 space (64:ff9b:1::/64 holds many): it stays IPv6, and
            # network_identity adds every IPv4 address to what it covers.
            return network
        # The IPv4 bits start at `start`; a 6to4 /48 or longer is one IPv4 site.
        v4_prefix = min(32, network.prefixlen - start)
        value = (int(network.network_address) >> (96 - start)) & 0xFFFFFFFF
        return ipaddress.IPv4Network((value, v4_prefix), strict=False)
    return network


def _span(network: IPNetwork) -> tuple[str, str]:
    base = _V4_IN_V6 if network.version == 4 else 0
    low = base | int(network.network_address)
    high = base | int(network.broadcast_address)
    return f"{low:032x}", f"{high:032x}"


IP_HINT = "must be an IPv4 or IPv6 address or CIDR network, without a zone id"


def network_identity(network: IPNetwork) -> Identity:
    network = _unembed(network)
    # A host route (/32, /128) is the address itself.
    value = str(network.network_address) if network.num_addresses == 1 else str(network)
    ranges = [_span(network)]
    if network.version == 6 and any(
        network.overlaps(p) and network.prefixlen < start for p, start in _EMBEDDINGS
    ):
        # A network around a whole IPv4 space (::/0, 2000::/3, 64:ff9b:1::/64) reaches every
        # IPv4 address.
        ranges.append(_ALL_V4)
    return Identity(Namespace.IP, value, value, ranges=tuple(ranges), network=network)


def read_address(text: str) -> IPAddress:
    """An address the grammar admitted, as its kind reads it."""
    if ":" in text:
        return ipaddress.IPv6Address(text)
    address = inet_aton(text)
    if address is None:  # the grammar and the reader disagree: refuse rather than guess
        raise TargetError(IP_HINT)
    return address


def canonical_ip(text: str) -> Identity:
    ambiguous = leading_zero_problem(text)
    if ambiguous:
        raise TargetError(ambiguous)
    if not RE["ip"].fullmatch(text):
        raise TargetError(IP_HINT)
    address_text, slash, prefix = text.partition("/")
    address = read_address(address_text)
    bits = int(prefix) if slash else address.max_prefixlen
    return network_identity(ipaddress.ip_network((address, bits), strict=False))
