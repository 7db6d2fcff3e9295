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

The identity itself is agents/identity.py; addresses and networks are read in
agents/addresses.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .addresses import (
    IP_HINT,
    canonical_ip,
    inet_aton,
    leading_zero_problem,
    network_identity,
    read_address,
)
from .grammar import IPV4_RE, IPV6_RE, MESSAGE_ID_RE, NETBIOS_RE, RE
from .identity import Identity, IPAddress, IPNetwork, Namespace, TargetError
from .lookalikes import skeleton

# What other modules read from here: the identity's types come with `canonical`.
__all__ = [
    "ASSET_KINDS",
    "IP_HINT",
    "Identity",
    "IPAddress",
    "IPNetwork",
    "Namespace",
    "TargetError",
    "alias_columns",
    "canonical",
    "inet_aton",
    "of_asset",
]


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
    ambiguous = leading_zero_problem(text)
    if ambiguous:
        raise TargetError(ambiguous)
    if not RE["host"].fullmatch(text):
        raise TargetError(HOST_HINT)
    # A number is an address to every resolver (`10.0.0.10`, `0x0a00000a`, `::1`): it is
    # matched as the address it is, never as a name that happens to be digits.
    if IPV4_RE.fullmatch(text) or IPV6_RE.fullmatch(text):
        return network_identity(ipaddress.ip_network(read_address(text)))
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
    key = _account_key(name)
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


def _account_key(name: str) -> str:
    """How a lower-case local part is matched: its A-label read as what it looks like, then
    without its sub-address. The tag is dropped after decoding as well as before it: an A-label
    can hold a look-alike plus (`xn--ceoalerts-d754c` is `ceo＋alerts`, read `ceo+alerts`), and
    an ASCII tag can follow an A-label (`xn--co-nlc+alerts`, which is no A-label as a whole)."""
    key = _label_key(name)
    if key == name:
        base, plus, _tag = name.partition("+")
        key = _label_key(base) if plus and base else name
    base, plus, _tag = key.partition("+")
    return base if plus and base else key


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
        return canonical_ip(text)
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
