"""Where an agent's callbacks may go: never into the SOC's own network."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from . import targets
from .addresses import NAT64

# Names that are this machine whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True)
class Destination:
    """Where a callback may go: why not (`problem`), or the address it was checked at.

    `addresses` are set when a name was resolved for the check: the POST connects to those
    addresses and to no other, so that a name answering with a public address for the check and
    with an inward one for the connection (DNS rebinding) reaches nothing inside.
    """

    problem: str | None
    # Every address the name answered, in the resolver's order (unique): a POST tries the
    # next when one cannot be reached, as a dual-stack name on a worker without IPv6 needs.
    addresses: tuple[targets.IPAddress, ...] = ()

    @property
    def address(self) -> targets.IPAddress | None:
        return self.addresses[0] if self.addresses else None


def callback_address_problem(url: str, *, resolve: bool) -> str | None:
    """Why the console must not POST to this URL, or None (see callback_destination)."""
    return callback_destination(url, resolve=resolve).problem


def callback_destination(url: str, *, resolve: bool) -> Destination:
    """Whether the console may POST to this URL, and the address it is to connect to.

    A compromised agent must not turn the workers into a proxy into the SOC's own network:
    loopback, private, link-local, multicast and other special addresses are refused unless
    CALLBACK_ALLOW_PRIVATE_NETWORKS is on. The host is read by the same canonicaliser as
    targets, so `2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]` and `localhost.` are
    the loopback addresses they are. `resolve` also checks what a name resolves to now (at
    delivery time, so a name cannot be pointed inward after it was registered), and gives the
    addresses to connect to: every one the name answered, each judged.
    """
    if settings.CALLBACK_ALLOW_PRIVATE_NETWORKS:
        return Destination(None)
    try:
        # Parsed as the client that sends the callback parses it; the host as it goes on the
        # wire (an internationalised name as its A-labels).
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return Destination(_unparsed(url, exc))
    if not host:
        return Destination("the URL names no host")
    try:
        identity = targets.canonical("host", host, domains={})
    except targets.TargetError:
        return Destination(f"{host} is not a valid host name")
    if identity.namespace is not targets.Namespace.HOST:
        return Destination(_special(host, identity.address))
    name = identity.key
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return Destination(f"{host} is this machine")
    if not resolve:
        return Destination(None)
    try:
        infos = socket.getaddrinfo(identity.value, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return Destination(f"{host} does not resolve")
    try:
        # Each answer is judged as what it stands for: an IPv4 address carried in IPv6 (NAT64,
        # 6to4, SIIT) as that IPv4 address.
        judged = [targets.canonical("ip", str(info[4][0])).address for info in infos]
    except targets.TargetError:  # an address with a zone: link-local, never one to call
        return Destination(f"{host} resolves to a link-local address")
    for address in judged:
        problem = _special(host, address)
        if problem:
            return Destination(problem)
    if not infos:
        return Destination(f"{host} does not resolve")
    answered = (ipaddress.ip_address(info[4][0]) for info in infos)
    connect = (_connect_to(a, j) for a, j in zip(answered, judged, strict=True))
    return Destination(None, tuple(dict.fromkeys(connect)))


def _connect_to(answered: targets.IPAddress, judged: targets.IPAddress | None) -> targets.IPAddress:
    """The address a callback connects to: the one judged, except a well-known NAT64 answer
    (64:ff9b::/96), which is connected to as answered so that a worker with only IPv6 reaches
    the IPv4 service through its translator. Every bit of such an answer was judged (the
    prefix and the IPv4 address fill it); 6to4 and a local NAT64 prefix leave bits the check
    does not read, which a translator or relay could read as another IPv4 address."""
    if judged is None or (answered.version == 6 and answered in NAT64):
        return answered
    return judged


def _special(host: str, address: targets.IPAddress | None) -> str | None:
    if address is None or not address.is_global or address.is_multicast or _inward(address):
        return f"{host} is a private, loopback, multicast or reserved address ({address or host})"
    return None


# Ranges Python 3.11's is_global calls global though IANA's special-purpose registries say they
# are not globally reachable: the IETF protocol assignments 192.0.0.0/24 (but for 192.0.0.9 and
# 192.0.0.10, which are), deprecated site-local IPv6 (fec0::/10, routed inside a site like a
# private network) and the IPv6 documentation prefix 3fff::/20 (RFC 9637).
_NOT_GLOBAL = (
    ipaddress.IPv4Network("192.0.0.0/24"),
    ipaddress.IPv6Network("fec0::/10"),
    ipaddress.IPv6Network("3fff::/20"),
)
_GLOBAL_INSIDE = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))


def _inward(address: targets.IPAddress) -> bool:
    if address in _GLOBAL_INSIDE:
        return False
    return any(address.version == network.version and address in network for network in _NOT_GLOBAL)


def _unparsed(url: str, exc: Exception) -> str:
    """Why a URL the sending client cannot parse is refused: what the canonicaliser says of its
    host when it has one (a leading zero, say, with both readings), else the client's reason."""
    try:
        host = urlsplit(url).hostname
    except (TypeError, ValueError):
        host = None
    if host:
        try:
            targets.canonical("host", host, domains={})
        except targets.TargetError as why:
            return f"the URL cannot be parsed: its host {why}"
    return f"the URL cannot be parsed ({exc})"
