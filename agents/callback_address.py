"""Where an agent's callbacks may go: never into the SOC's own network."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from . import targets

# Names that are this machine whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def callback_address_problem(url: str, *, resolve: bool) -> str | None:
    """Why the console must not POST to this URL, or None.

    A compromised agent must not turn the workers into a proxy into the SOC's own network:
    loopback, private, link-local and other special addresses are refused unless
    CALLBACK_ALLOW_PRIVATE_NETWORKS is on. The host is read by the same canonicaliser as
    targets, so `2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]` and `localhost.` are
    the loopback addresses they are. `resolve` also checks what a name resolves to now (at
    delivery time, so a name cannot be pointed inward after it was registered).
    """
    if settings.CALLBACK_ALLOW_PRIVATE_NETWORKS:
        return None
    try:
        # Parsed as the client that sends the callback parses it; the host as it goes on the
        # wire (an internationalised name as its A-labels).
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return _unparsed(url, exc)
    if not host:
        return "the URL names no host"
    try:
        identity = targets.canonical("host", host, domains={})
    except targets.TargetError:
        return f"{host} is not a valid host name"
    if identity.namespace is targets.Namespace.HOST:
        name = identity.key
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            return f"{host} is this machine"
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(identity.value, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return f"{host} does not resolve"
        addresses = [targets.canonical("ip", str(info[4][0])).address for info in infos]
    else:
        addresses = [identity.address]
    for address in addresses:
        if address is None or not address.is_global:
            return f"{host} is a private, loopback or reserved address ({address or host})"
    return None


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
