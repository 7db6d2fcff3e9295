"""A target's identity: what `agents.targets.canonical` makes of any spelling of it.

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
from dataclasses import dataclass, field
from enum import StrEnum


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
