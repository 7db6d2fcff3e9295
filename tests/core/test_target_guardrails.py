"""No spelling of a critical asset gets past the two-person rule or the asset scope.

The guardrails judge a proposal by the asset its target names. Hypothesis writes the names of
the inventory's critical assets every way a resolver, a directory or a person's eye would
still read as that asset, and each spelling goes through the agent API as an agent would send
it, for agents at levels 2, 3 and 4 with confidence up to 1.0. A spelling in ASCII (look-alike
letters as punycode A-labels) must reach two humans; one with any other character, or an
address with a leading zero (octal to resolvers, decimal to people), must be refused with
nothing recorded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from approvals.models import Execution, Proposal
from tests import factories
from tests.lookalike_letters import named_lookalikes

pytestmark = pytest.mark.django_db

ASSET_ACTIONS = {
    "ip": ["block_ip", "update_firewall_policy"],
    "host": ["isolate_host", "kill_process"],
    "user": ["disable_user", "reset_password", "revoke_sessions"],
    "mailbox": ["quarantine_email"],
}
ALL_ACTIONS = [action for actions in ASSET_ACTIONS.values() for action in actions]

CRITICAL_NETWORK = ipaddress.IPv4Network("10.30.0.0/24")
CRITICAL_V4 = ["10.0.0.10", "10.0.0.11"]  # an IP asset, and an address alias of dc01
CRITICAL_V6 = "2001:db8:c0::10"
CRITICAL_HOSTS = ["dc01.corp.example", "ldap.corp.example"]  # dc01, and its alias
CRITICAL_USERS = ["ceo@corp.example", "chief.executive@corp.example"]
CRITICAL_MAILBOXES = ["finance@corp.example", "ap@corp.example"]
CRITICAL_IDENTIFIERS = {
    "dc01.corp.example",
    "10.0.0.10",
    str(CRITICAL_NETWORK),
    CRITICAL_V6,
    "ceo@corp.example",
    "finance@corp.example",
}


@dataclass
class Agents:
    by_level: dict[int, APIClient]
    out_of_tier: APIClient
    out_of_group: APIClient


@pytest.fixture
def inventory(db: None, settings: Any) -> Agents:
    settings.TARGET_DOMAINS = {"corp": "corp.example"}
    settings.API_RATE_LIMIT_PER_MINUTE = 10**6
    factories.asset(
        "dc01.corp.example",
        criticality="critical",
        group="domain-controllers",
        aliases=("ldap.corp.example", "10.0.0.11"),
    )
    factories.asset("10.0.0.10", kind="ip", criticality="critical", group="core-network")
    factories.asset(str(CRITICAL_NETWORK), kind="ip", criticality="critical", group="payments")
    factories.asset(CRITICAL_V6, kind="ip", criticality="critical", group="core-network")
    factories.asset(
        "ceo@corp.example",
        kind="user",
        criticality="critical",
        group="executives",
        aliases=("chief.executive@corp.example",),
    )
    factories.asset(
        "finance@corp.example",
        kind="mailbox",
        criticality="critical",
        group="finance",
        aliases=("ap@corp.example",),
    )
    # Look-alikes that are not critical: a short name or a local part must take the highest.
    for name, kind in [
        ("dc01.lab.example", "host"),
        ("ldap.lab.example", "host"),
        ("ceo@lab.example", "user"),
        ("198.18.0.5", "ip"),
    ]:
        factories.asset(name, kind=kind, criticality="low", group="workstations")
    by_level = {
        level: factories.agent_client(
            factories.agent(
                f"level-{level}", grants=dict.fromkeys(ALL_ACTIONS, level), auto_threshold=0.9
            ).raw_key
        )
        for level in (2, 3, 4)
    }
    grants = dict.fromkeys(ALL_ACTIONS, 4)
    return Agents(
        by_level=by_level,
        out_of_tier=factories.agent_client(
            factories.agent("tiers", grants=grants, scope_tiers=["low", "medium", "high"]).raw_key
        ),
        out_of_group=factories.agent_client(
            factories.agent("groups", grants=grants, scope_groups=["workstations"]).raw_key
        ),
    )


# --- spellings ------------------------------------------------------------------------------

LOOKALIKES = {
    "a": "аα",
    "c": "сϲ",
    "d": "ԁ",
    "e": "еε",
    "h": "һ",
    "i": "іι",
    "j": "ј",
    "l": "ӏ",
    "o": "оοօ",
    "p": "рρ",
    "s": "ѕ",
    "x": "хχ",
    "y": "у",
    "C": "СΣ",
    "E": "ЕΕ",
    "O": "ОΟ",
    "P": "РΡ",
}
# Drawn as nothing, or as a blank: zero-width and format characters, the Hangul fillers, the
# braille blank, spaces, variation selectors, a tag, unassigned default-ignorables.
INVISIBLE = (
    "\u00ad\u034f\u115f\u1160\u17b4\u180e\u200b\u200d\u2060\u2065\u2800\u3164"
    "\ufe0f\ufeff\uffa0\ufff0\u00a0\u1680\u2003\u3000\U000e0020"
)
# Decimal digits of other scripts: Arabic-Indic, Devanagari, Bengali, Thai, Myanmar, Khmer.
DIGIT_ZEROS = (0x0660, 0x0966, 0x09E6, 0x0E50, 0x1040, 0x17E0)
# Letters of scripts the look-alike table leaves out (Coptic, Cherokee, Lisu): such a name
# holds a letter nobody can read for certain, and must be rated as the most critical asset.
UNKNOWN_LETTERS = "ⲥⲟⲁⲉⲓⲕⲣⲧⲭꭰꭱꭲꭹᏟᎠᎬᏞᏒꓐꓑꓒꓓꓔꓕꓖꓗꓚꓛꓝꓞꓠꓡꓢꓣ"
BOLD = {c: chr(0x1D41A + ord(c) - ord("a")) for c in "abcdefghijklmnopqrstuvwxyz"} | {
    c: chr(0x1D7CE + ord(c) - ord("0")) for c in "0123456789"
}


def _fullwidth(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


@st.composite
def disguised(draw: st.DrawFn, text: str, *, unicode: bool = True) -> str:
    """`text` in random case and, half the time, with characters swapped for their
    fullwidth, bold, other-script or Latin look-alikes (small capitals, modifier letters,
    letters with a stroke or hook: every letter Unicode names as that ASCII letter), another
    script's digit or a letter of a script no table covers, or given a combining accent or an
    invisible character."""
    unicode = unicode and draw(st.booleans())
    latin = named_lookalikes()
    out = []
    for c in text:
        c = c.upper() if draw(st.booleans()) else c
        if unicode:
            how = draw(
                st.sampled_from(
                    [
                        "same",
                        "same",
                        "fullwidth",
                        "bold",
                        "lookalike",
                        "latin",
                        "latin",
                        "mark",
                        "invisible",
                        "digit",
                        "unknown",
                    ]
                )
            )
            if how == "fullwidth":
                c = _fullwidth(c)
            elif how == "bold" and c.lower() in BOLD:
                c = BOLD[c.lower()]
            elif how == "lookalike" and c in LOOKALIKES:
                c = draw(st.sampled_from(LOOKALIKES[c]))
            elif how == "latin" and c.lower() in latin:
                c = draw(st.sampled_from(latin[c.lower()]))
            elif how == "mark" and c.isalpha():
                c += draw(st.sampled_from("\u0301\u0308\u0327"))
            elif how == "invisible":
                c += draw(st.sampled_from(INVISIBLE))
            elif how == "digit" and c.isdigit():
                c = chr(draw(st.sampled_from(DIGIT_ZEROS)) + int(c))
            elif how == "unknown" and c.isalpha():
                c = draw(st.sampled_from(UNKNOWN_LETTERS))
        out.append(c)
    return "".join(out)


def _aton(address: ipaddress.IPv4Address, parts: int, bases: list[str]) -> str:
    number = int(address)
    octets = [(number >> (8 * (3 - i))) & 0xFF for i in range(4)]
    values = [*octets[: parts - 1], number & ((1 << (8 * (5 - parts))) - 1)]
    forms = {"d": "{}", "o": "0{:o}", "x": "0x{:x}", "X": "0X{:X}"}
    return ".".join(forms[b].format(v) for v, b in zip(values, bases, strict=False))


@st.composite
def ipv4_spelling(draw: st.DrawFn, address: ipaddress.IPv4Address, *, as_host: bool) -> str:
    n = int(address)
    forms = [
        _aton(
            address,
            draw(st.integers(1, 4)),
            draw(st.lists(st.sampled_from("doxX"), min_size=4, max_size=4)),
        ),
        f"::ffff:{address}",
        f"::FFFF:{n >> 16:x}:{n & 0xFFFF:x}",
        f"0:0:0:0:0:ffff:{address}",
        f"::{address}",
        f"64:ff9b::{address}",
        f"64:ff9b::{n >> 16:x}:{n & 0xFFFF:x}",
        f"::ffff:0:{address}",
        f"::ffff:0:{n >> 16:x}:{n & 0xFFFF:x}",
        f"64:ff9b:1::{address}",
        f"64:ff9b:1::{n >> 16:x}:{n & 0xFFFF:x}",
        f"2002:{n >> 16:x}:{n & 0xFFFF:x}::{draw(st.integers(0, 0xFFFF)):x}",
        "".join(_fullwidth(c) for c in str(address)),
    ]
    if not as_host:
        prefix = draw(st.integers(0, 32))
        forms += [
            f"{address}/32",
            f"::ffff:{address}/128",
            f"{address}/{prefix}",  # any network around the address
            f"::ffff:{address}/{96 + prefix}",
            f"::ffff:0:{address}/{96 + prefix}",
            f"64:ff9b:1::{address}/{96 + prefix}",
            f"2002:{n >> 16:x}:{n & 0xFFFF:x}::/{16 + prefix}",
        ]
    return draw(st.sampled_from(forms))


@st.composite
def ipv6_spelling(draw: st.DrawFn, *, as_host: bool) -> str:
    address = ipaddress.IPv6Address(CRITICAL_V6)
    forms = [address.exploded, address.exploded.upper(), str(address)]
    if not as_host:
        forms += [f"{address}/128", f"{address}/{draw(st.integers(0, 127))}"]
    return draw(st.sampled_from(forms))


def _a_labels(name: str) -> str:
    """A name as it goes on the wire: each label that is not ASCII as its A-label."""
    return ".".join(
        label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
        for label in name.split(".")
    )


@st.composite
def host_spelling(draw: st.DrawFn, name: str) -> str:
    labels = name.split(".")
    chosen = ".".join(labels[: draw(st.integers(1, len(labels)))])  # dc01, dc01.corp, full
    spelled = draw(disguised(chosen))
    if not spelled.isascii() and draw(st.integers(0, 2)):
        spelled = _a_labels(spelled)  # as punycode, which must not hide the look-alikes
    elif draw(st.booleans()):
        spelled = spelled.replace(".", draw(st.sampled_from(["．", "。"])))
    if draw(st.booleans()):
        spelled += "."
    return spelled


@st.composite
def user_spelling(draw: st.DrawFn, principal: str, *, mailbox: bool) -> str:
    local, _, domain = principal.partition("@")
    spelled = draw(disguised(local))
    # A sub-address, delivered to the account itself: with a plus or a look-alike of one,
    # inside the A-label below or (an ASCII plus) after it.
    plus = draw(st.sampled_from(["", "", "+", "\uff0b", "\ufe62", "\u207a", "\u208a"]))
    tag = plus + draw(st.text("abcxyz019", min_size=1, max_size=6)) if plus else ""
    tag_after = plus == "+" and draw(st.booleans())
    spelled += "" if tag_after else tag
    if not spelled.isascii() and draw(st.integers(0, 2)):
        # As an A-label, as a host name's labels are written: it must not hide whose account
        # it is (unless too long for a local part, when it stays non-ASCII and is refused).
        a_label = "xn--" + spelled.encode("punycode").decode("ascii")
        spelled = a_label if len(a_label) <= 64 else spelled
    spelled += tag if tag_after else ""
    # A look-alike domain, as its A-labels: it must not hide whose account it is.
    lookalike = ".".join(draw(disguised(label)) for label in domain.split("."))
    domain = draw(st.sampled_from([domain, domain.upper(), _a_labels(lookalike)]))
    if mailbox:
        forms = [f"@{domain}", f"@{domain}.", "＠" + domain]
        return spelled + draw(st.sampled_from(forms))
    forms = [
        f"{spelled}@{domain}",
        f"{spelled}@{domain}.",
        f"CORP\\{spelled}",
        f"corp\\{spelled}",
        f"ＣＯＲＰ＼{spelled}",
        f"{spelled}@CORP",
        f"EU\\{spelled}",  # a domain nobody mapped: the local part alone decides
        f"{domain}\\{spelled}",
        spelled,  # a bare user name
    ]
    return draw(st.sampled_from(forms))


@st.composite
def critical_target(draw: st.DrawFn) -> tuple[str, str]:
    """(action, target) naming one of the inventory's critical assets."""
    family = draw(st.sampled_from(["ipv4", "network", "ipv6", "host", "user", "mailbox"]))
    if family in ("ipv4", "network", "ipv6"):
        action = draw(st.sampled_from(ASSET_ACTIONS["ip"] + ASSET_ACTIONS["host"]))
        as_host = action in ASSET_ACTIONS["host"]
        if family == "ipv6":
            return action, draw(ipv6_spelling(as_host=as_host))
        if family == "ipv4":
            address = ipaddress.IPv4Address(draw(st.sampled_from(CRITICAL_V4)))
        else:
            offset = draw(st.integers(0, CRITICAL_NETWORK.num_addresses - 1))
            address = CRITICAL_NETWORK.network_address + offset
        return action, draw(ipv4_spelling(address, as_host=as_host))
    if family == "host":
        name = draw(st.sampled_from(CRITICAL_HOSTS))
        return draw(st.sampled_from(ASSET_ACTIONS["host"])), draw(host_spelling(name))
    if family == "user":
        name = draw(st.sampled_from(CRITICAL_USERS))
        return draw(st.sampled_from(ASSET_ACTIONS["user"])), draw(
            user_spelling(name, mailbox=False)
        )
    name = draw(st.sampled_from(CRITICAL_MAILBOXES + CRITICAL_USERS))
    return "quarantine_email", draw(user_spelling(name, mailbox=True))


def _leading_zero(target: str) -> bool:
    """Whether an IPv4 text (alone, before a prefix or carried in IPv6) has a part with a
    leading zero: octal to resolvers, decimal to people, and refused."""
    _, colon, v4 = target.partition("/")[0].rpartition(":")
    if colon and "." not in v4:
        return False
    return any(re.fullmatch(r"0[0-9]+", part) for part in v4.split("."))


def _holds_unknown_letter(target: str) -> bool:
    """Whether a target's A-labels stand for a letter of a script no look-alike table covers."""
    decoded = []
    for part in re.split(r"[@\\]", target):  # a local part (with its dots), or a domain
        for label in [part, *part.split(".")]:
            if label.lower().startswith("xn--"):
                with contextlib.suppress(UnicodeError):
                    decoded.append(label[4:].encode("ascii").decode("punycode"))
    return any(c in UNKNOWN_LETTERS for text in decoded for c in text)


# --- the property ---------------------------------------------------------------------------


@hypothesis_settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(
    pick=critical_target(),
    level=st.sampled_from([2, 3, 4]),
    confidence=st.floats(0.5, 1.0),
)
def test_no_spelling_of_a_critical_asset_runs_without_two_humans(
    inventory: Agents, pick: tuple[str, str], level: int, confidence: float
) -> None:
    action, target = pick
    # Each example starts from the same inventory and no proposals.
    with transaction.atomic():
        response = factories.post_proposal(
            inventory.by_level[level],
            action,
            target,
            confidence=confidence,
            rationale="Confident, and wrong about how the target is spelled.",
        )
        # Read as the API reads it: without the spaces around it, of any kind (as str.strip).
        target = target.strip()
        if not target.isascii():
            event("refused: not ASCII")
            # Targets are written in ASCII: a look-alike that is not an A-label never gets in.
            assert response.status_code == 400, (target, response.json())
            assert "target" in response.json()["errors"]
            assert not Proposal.objects.exists()
            transaction.set_rollback(True)
            return
        if _leading_zero(target):
            event("refused: a leading zero")
            # Octal to resolvers, decimal to people: neither reading is taken.
            assert response.status_code == 400, (target, response.json())
            assert "leading zero" in response.json()["errors"]["target"][0]
            assert not Proposal.objects.exists()
            transaction.set_rollback(True)
            return
        assert response.status_code == 201, (target, response.json())
        event(f"routed: {action}")
        body = response.json()
        assert body["target"] == target
        assert body["status"] == "pending", (target, body["target_canonical"], body["explanation"])
        assert body["required_approvals"] == 2
        assert body["criticality"] == "critical"
        if _holds_unknown_letter(target):
            event("an unreadable look-alike")
            # No asset, or one matched by another part of the name: critical either way.
            assert body["asset"] is None or body["asset"]["identifier"] in CRITICAL_IDENTIFIERS
        else:
            assert body["asset"]["identifier"] in CRITICAL_IDENTIFIERS
        assert body["routing"]["outcome"] == "pending"
        assert body["execution"] is None
        assert not Execution.objects.filter(proposal_id=body["id"]).exists()

        for scoped in (inventory.out_of_tier, inventory.out_of_group):
            refused = factories.post_proposal(scoped, action, target, confidence=confidence)
            assert refused.status_code == 403, (target, refused.json())
            assert refused.json()["code"] == "target_out_of_scope"
        assert not Proposal.objects.filter(status="auto_approved").exists()
        transaction.set_rollback(True)
