"""The canonicaliser: every spelling of a target is one identity (no database)."""

from __future__ import annotations

import ipaddress
import socket
import string
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agents.grammar import IPV6, PATTERNS
from agents.lookalikes import skeleton
from agents.targets import (
    Namespace,
    TargetError,
    canonical,
    inet_aton,
)
from tests.lookalike_letters import named_lookalikes

DOMAINS = {"corp": "corp.example"}

v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        # every numeric spelling inet_aton reads
        ("ip", "2130706433", "127.0.0.1"),
        ("ip", "0x7f000001", "127.0.0.1"),
        ("ip", "0X7F.1", "127.0.0.1"),
        ("ip", "127.1", "127.0.0.1"),
        ("ip", "127.0.1", "127.0.0.1"),
        ("ip", "0x7f.0.0.0x01", "127.0.0.1"),
        ("ip", "0x0000007f.0.0.1", "127.0.0.1"),  # zeros after 0x: hex to everyone
        ("ip", "10.0.0", "10.0.0.0"),  # a lone 0 is no leading zero
        ("ip", "10.0.0.0/8", "10.0.0.0/8"),
        # IPv4 carried in IPv6
        ("ip", "::ffff:10.0.0.10", "10.0.0.10"),
        ("ip", "::ffff:a00:a", "10.0.0.10"),
        ("ip", "::10.0.0.10", "10.0.0.10"),
        ("ip", "64:ff9b::10.0.0.10", "10.0.0.10"),
        ("ip", "2002:a00:a::", "10.0.0.10"),
        ("ip", "2002:0a00:000a:1:2:3:4:5", "10.0.0.10"),
        # host routes are addresses; networks stay networks
        ("ip", "10.0.0.10/32", "10.0.0.10"),
        ("ip", "::ffff:10.0.0.10/128", "10.0.0.10"),
        ("ip", "2001:DB8::1/128", "2001:db8::1"),
        ("ip", "10.0.0.10/8", "10.0.0.0/8"),
        ("ip", "::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("ip", "2002:a00::/24", "10.0.0.0/8"),
        ("ip", "0x0a000000/8", "10.0.0.0/8"),
        ("ip", "::1", "::1"),  # IPv6's own loopback, not 0.0.0.1
        # host names
        ("host", "DC01.Corp.Example.", "dc01.corp.example"),
        ("host", "dc01", "dc01"),
        ("host", "XN--D01-4ED.corp.example", "xn--d01-4ed.corp.example"),  # dс01, Cyrillic с
        # a number in a host field is the address it is to every resolver
        ("host", "10.0.0.10", "10.0.0.10"),
        ("host", "0x0a00000a", "10.0.0.10"),
        ("host", "::ffff:10.0.0.10", "10.0.0.10"),
        # users
        ("user", "CORP\\ceo", "ceo@corp.example"),
        ("user", "corp\\CEO", "ceo@corp.example"),
        ("user", "ceo@CORP", "ceo@corp.example"),
        ("user", "CEO@Corp.Example.", "ceo@corp.example"),
        ("user", "corp.example\\ceo", "ceo@corp.example"),
        ("user", "EU\\ceo", "eu\\ceo"),  # an unmapped domain: only the name is known
        ("user", "ceo", "ceo"),
        # mailboxes and message ids
        ("mailbox", "Finance@Corp.Example", "finance@corp.example"),
        ("mailbox", "<AbC123@mail.example>", "<AbC123@mail.example>"),
        ("ticket", "SOC-1234", "SOC-1234"),
    ],
)
def test_spellings_have_one_canonical_value(kind: str, raw: str, value: str) -> None:
    assert canonical(kind, raw, domains=DOMAINS).value == value


def _a_labels(name: str) -> str:
    return ".".join(
        f"xn--{label.encode('punycode').decode()}" if not label.isascii() else label
        for label in name.split(".")
    )


@pytest.mark.parametrize(
    ("kind", "spellings"),
    [
        (
            "host",
            ["dc01.corp.example", _a_labels("dс01.corp.example"), _a_labels("DС01.cοrp.example")],
        ),
        (
            "host",
            [
                "payroll.corp.example",
                _a_labels("раyroll.corp.example"),
                _a_labels("ＰＡＹＲΟＬＬ.corp.example"),
            ],
        ),
        (
            "host",
            [
                "dc01.corp.example",
                _a_labels("dc01.c\u0301orp.example"),
                _a_labels("dc01.co\u200brp.example"),
            ],
        ),
        ("user", ["ceo@corp.example", "ceo@" + _a_labels("сorp.example"), "CORP\\CEO", "ceo@CORP"]),
    ],
)
def test_look_alikes_in_a_labels_share_the_key_the_inventory_is_matched_on(
    kind: str, spellings: list[str]
) -> None:
    keys = {canonical(kind, raw, domains=DOMAINS).key for raw in spellings}
    assert len(keys) == 1
    # while the connector gets the name that was written
    assert len({canonical(kind, raw, domains=DOMAINS).value for raw in spellings}) > 1


def test_short_names_are_marked_so_they_match_every_asset_with_their_label() -> None:
    short = canonical("host", "DC01.", domains=DOMAINS)
    assert (short.short, short.label) == (True, "dc01")
    assert canonical("host", "dc01.corp.example").host_prefixes() == [
        "dc01",
        "dc01.corp",
        "dc01.corp.example",
    ]
    for raw in ("ceo", "EU\\ceo", "ceo@EU"):
        user = canonical("user", raw, domains=DOMAINS)
        assert (user.short, user.label, user.key) == (True, "ceo", "ceo")
    assert not canonical("user", "CORP\\ceo", domains=DOMAINS).short


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("ip", "not-an-ip"),
        ("ip", "10.0.0.256"),
        ("ip", "1.2.3.4.5"),
        ("ip", "08.1.1.1"),  # 8 is no octal digit
        ("ip", "0177.0.0.01"),  # a leading zero: octal to resolvers, decimal to people
        ("ip", "0x"),
        ("ip", "+1"),
        ("ip", "1_0.0.0.1"),
        ("ip", "١٠.0.0.1"),  # Arabic-Indic digits: int() takes them, resolvers do not
        ("ip", "10.0.0.0/33"),
        ("ip", "10.0.0.0/08"),
        ("ip", "10.0.0.0/255.0.0.0"),
        ("ip", "fe80::1%eth0"),  # a zone names the sender's interface, not a host
        ("ip", "[2001:db8::1]"),
        ("ip", "::ffff:127.1"),
        ("ip", "１０.０.０.１０"),  # fullwidth digits: not ASCII
        ("host", "host.10"),  # a broken address, not a name
        ("host", "dc01:3389"),
        ("host", "a..b"),
        ("host", "-dc01.corp.example"),
        ("host", "dc 01.corp.example"),
        ("host", "☃.corp.example"),
        ("host", "ｄｃ０１.corp.example"),  # fullwidth
        ("host", "dс01.corp.example"),  # a Cyrillic с, not as its A-label
        ("host", "dc01。corp。example"),
        ("host", "10.0.0.0/8"),  # a network is no host
        ("host", "[::1]"),
        ("host", "dc01\x00.corp.example"),
        ("host", "dc01\x07.corp.example"),
        ("user", "ceo@"),
        ("user", "CORP\\"),
        ("user", "a\\b\\c"),
        ("user", "ceo@10.0.0.1"),
        ("user", "c e o@corp.example"),
        ("user", "ce\u200bo@corp.example"),  # an invisible character
        ("user", "сeo@corp.example"),  # a Cyrillic с
        ("user", "ＣＯＲＰ＼ｃｅｏ"),
        ("user", "corp.example.\\ceo"),
        ("mailbox", "ceo"),
        ("mailbox", "CORP\\ceo"),
        # A message id with an escape sequence and a bell, or a C1 control, in it.
        ("mailbox", "<\x1b[31mabc\x07@mail.example>"),
        ("mailbox", "<abc\x9b@mail.example>"),
        ("ticket", "not a ticket"),
        ("host", ""),
        ("host", "   "),
        ("host", "a" * 256),
    ],
)
def test_unreadable_targets_are_refused_with_a_reason(kind: str, raw: str) -> None:
    with pytest.raises(TargetError) as refused:
        canonical(kind, raw, domains=DOMAINS)
    assert str(refused.value)


def test_a_target_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(TargetError, match="non-empty string"):
        canonical("ip", 12345)


def _padded(text: str) -> bool:
    """Whether an IPv4 text has a part with a leading zero (`010`, `00`), which inet_aton
    reads as octal."""
    return any(
        len(part) > 1 and part[0] == "0" and part[1] in string.digits for part in text.split(".")
    )


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_numeric_spellings_are_read_exactly_as_the_system_resolver_reads_them(
    text: str,
) -> None:
    try:
        system = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        system = None
    assert inet_aton(text) == system
    # and the grammar the schema states admits exactly those, less the octal ones
    try:
        read = canonical("ip", text).address
    except TargetError:
        read = None
    assert read == (None if _padded(text) else system)


@pytest.mark.parametrize(
    ("kind", "raw", "octal", "decimal"),
    [
        ("ip", "010.000.000.010", "8.0.0.8", "10.0.0.10"),
        ("ip", "10.0.0.010", "10.0.0.8", "10.0.0.10"),
        ("ip", "0010.0.0.10", "8.0.0.10", "10.0.0.10"),
        ("ip", "012.0.0.012", "10.0.0.10", "12.0.0.12"),
        ("ip", "0x0a.0.0.010", "10.0.0.8", "10.0.0.10"),  # hex parts stay hex in both
        ("ip", "010.10", "8.0.0.10", "10.0.0.10"),  # the last part fills the bytes left
        ("ip", "09.0.0.10", "which read no address in it", "9.0.0.10"),  # 9 is not octal
        ("ip", "05000000000", "40.0.0.0", "which read no address in it"),  # past 32 bits
        ("ip", "010.0.0.0/8", "8.0.0.0/8", "10.0.0.0/8"),
        ("ip", "::ffff:010.0.0.10", "::ffff:8.0.0.10", "::ffff:10.0.0.10"),
        ("ip", "64:ff9b::10.0.0.010/120", "64:ff9b::10.0.0.8/120", "64:ff9b::10.0.0.10/120"),
        ("host", "010.000.000.010", "8.0.0.8", "10.0.0.10"),
        ("host", "::ffff:10.0.0.010", "::ffff:10.0.0.8", "::ffff:10.0.0.10"),
    ],
)
def test_a_number_with_a_leading_zero_is_refused_with_both_readings(
    kind: str, raw: str, octal: str, decimal: str
) -> None:
    with pytest.raises(TargetError) as refused:
        canonical(kind, raw)
    assert str(refused.value) == (
        f"{raw!r} is ambiguous: a part with a leading zero is octal to resolvers ({octal}) "
        f"and decimal to people ({decimal}). Write the address without leading zeros"
    )


@pytest.mark.parametrize(
    "raw", ["10.0.0.07", "00", "10.00.0.1", "0.0.0.00/8", "09.0377.0.1", "0999.1.1.1"]
)
def test_a_leading_zero_is_refused_whether_its_readings_agree_or_are_no_address(
    raw: str,
) -> None:
    with pytest.raises(TargetError, match="leading zero"):
        canonical("ip", raw)


@st.composite
def padded_spellings(draw: st.DrawFn) -> tuple[ipaddress.IPv4Address | None, str]:
    """An IPv4 text in 1 to 4 parts, at least one of them with a leading zero (decimal digits
    after zeros, so that some are no octal number at all), and the address it is to a person
    (None when it is none)."""
    count = draw(st.integers(1, 4))
    limits = [0xFF] * (count - 1) + [256 ** (5 - count) - 1]
    values = [draw(st.integers(0, limit)) for limit in limits]
    forms = draw(st.lists(st.sampled_from("dxp"), min_size=count, max_size=count))
    forms[draw(st.integers(0, count - 1))] = "p"
    parts = []
    for value, form in zip(values, forms, strict=True):
        if form == "p":
            parts.append("0" * draw(st.integers(1, 3)) + str(value))
        else:
            parts.append(f"0x{value:x}" if form == "x" else str(value))
    number = values[-1]
    for position, value in enumerate(values[:-1]):
        number |= value << (8 * (3 - position))
    return ipaddress.IPv4Address(number), ".".join(parts)


@given(padded_spellings(), st.sampled_from(["{}", "{}/24", "::ffff:{}", "64:ff9b::{}"]))
def test_every_spelling_with_a_leading_zero_is_refused_naming_what_a_person_reads(
    spelling: tuple[ipaddress.IPv4Address, str], form: str
) -> None:
    meant, text = spelling
    if ":" in form:
        assume(text.count(".") == 3)  # IPv6 carries only a dotted quad
    raw = form.format(text)
    for kind in ("ip", "host") if "/" not in form else ("ip",):
        with pytest.raises(TargetError, match="leading zero") as refused:
            canonical(kind, raw)
        # What a person reads is named, and what the resolver reads when it reads anything.
        assert f"({form.format(meant)})" in str(refused.value)
        try:
            system = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            continue
        assert f"({form.format(system)})" in str(refused.value)


def _aton_spellings(address: ipaddress.IPv4Address) -> st.SearchStrategy[str]:
    """inet_aton spellings that read the same to everyone: 1 to 4 parts, each decimal
    without a leading zero or hex (with or without zeros after the 0x)."""
    number = int(address)

    def spell(value: int, base: str) -> str:
        return {
            "d": str(value),
            "x": f"0x{value:x}",
            "X": f"0X{value:X}",
            "z": f"0x00{value:x}",
        }[base]

    def build(parts: int, bases: list[str]) -> str:
        octets = [(number >> (8 * (3 - i))) & 0xFF for i in range(4)]
        leading = octets[: parts - 1]
        rest = number & ((1 << (8 * (5 - parts))) - 1)
        return ".".join(spell(v, b) for v, b in zip([*leading, rest], bases, strict=False))

    return st.builds(
        build,
        st.integers(1, 4),
        st.lists(st.sampled_from("dxXz"), min_size=4, max_size=4),
    )


@given(st.data(), v4)
def test_every_spelling_of_an_ipv4_address_is_that_address(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    spelled = data.draw(_aton_spellings(address))
    number = int(address)
    embedded = data.draw(
        st.sampled_from(
            [
                spelled,
                f"::ffff:{address}",
                f"::ffff:{number >> 16:x}:{number & 0xFFFF:x}",
                f"64:ff9b::{address}",
                f"::ffff:0:{address}",  # SIIT's IPv4-translated form
                f"::ffff:0:{number >> 16:x}:{number & 0xFFFF:x}",
                f"64:ff9b:1::{address}",  # NAT64's local-use prefix, as a /96
                f"64:ff9b:1::{number >> 16:x}:{number & 0xFFFF:x}",
                f"2002:{number >> 16:x}:{number & 0xFFFF:x}::1",
                f"{address}/32",
                f"::ffff:{address}/128",
            ]
        )
    )
    identity = canonical("ip", embedded)
    assert identity.value == str(address)
    assert identity.address == address


@given(v4, st.sampled_from(["ip", "host"]))
def test_a_dotted_quad_is_what_pythons_ipaddress_reads(
    address: ipaddress.IPv4Address, kind: str
) -> None:
    text = str(address)  # decimal, no leading zeros: the one form ipaddress takes
    assert canonical(kind, text).value == str(ipaddress.ip_address(text))


@given(v4)
def test_ipv4_compatible_addresses_are_their_ipv4_address(address: ipaddress.IPv4Address) -> None:
    assume(int(address) > 1)  # :: and ::1 are IPv6's own
    assert canonical("ip", f"::{address}").value == str(address)


@given(v4, st.integers(0, 31))
def test_a_network_covers_every_address_inside_it(
    address: ipaddress.IPv4Address, prefix: int
) -> None:
    network = canonical("ip", f"{address}/{prefix}")
    point = canonical("ip", str(address))
    ((low, high),) = network.ranges
    ((at, _),) = point.ranges
    assert low <= at <= high
    assert network.network == ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def test_an_ipv6_network_around_an_embedding_reaches_every_ipv4_address() -> None:
    world = canonical("ip", "2000::/3")  # holds 6to4, so every IPv4 site
    v4_point = canonical("ip", "10.0.0.10").ranges[0][0]
    assert any(low <= v4_point <= high for low, high in world.ranges)
    for around in ("64:ff9b:1::/48", "64:ff9b:1:abcd::/64", "::ffff:0:0:0/95"):
        # NAT64's local-use prefix holds many IPv4 spaces; the translated one's supernet too.
        assert any(low <= v4_point <= high for low, high in canonical("ip", around).ranges)
    documentation = canonical("ip", "2001:db8::/32")
    assert not any(low <= v4_point <= high for low, high in documentation.ranges)


LABELS = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@given(
    st.lists(LABELS, min_size=2, max_size=4),
    st.lists(st.booleans(), min_size=40, max_size=40),
    st.booleans(),
)
def test_case_and_the_root_dot_do_not_change_a_host(
    labels: list[str], upper: list[bool], root: bool
) -> None:
    name = ".".join(labels)
    spelled = "".join(c.upper() if up else c for c, up in zip(name, upper, strict=False))
    spelled += name[len(upper) :]
    if root:
        spelled += "."
    assume(not labels[-1].isdigit())
    identity = canonical("host", spelled)
    assert (identity.value, identity.key) == (name, name)


@given(st.lists(LABELS, min_size=1, max_size=3), st.integers(0, 2), st.sampled_from("\uff0e\u3002"))
def test_a_host_with_any_non_ascii_character_is_refused(
    labels: list[str], where: int, dot: str
) -> None:
    name = ".".join(labels)
    for spelled in (
        name.replace(".", dot) if "." in name else dot + name,
        "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in name),
        name[:where] + "\u0441" + name[where:],  # a Cyrillic с
    ):
        with pytest.raises(TargetError, match="ASCII"):
            canonical("host", spelled)


@given(st.lists(LABELS, min_size=1, max_size=3))
def test_canonical_values_are_fixed_points(labels: list[str]) -> None:
    name = ".".join(labels)
    for kind, raw in (("host", name), ("user", f"{labels[0]}@{name}.example")):
        once = canonical(kind, raw, domains=DOMAINS)
        assert canonical(kind, once.value, domains=DOMAINS) == once


def test_punycode_is_matched_by_what_it_stands_for() -> None:
    a_label = _a_labels("раypal")  # Cyrillic р and а
    assert a_label.startswith("xn--")
    assert canonical("host", f"{a_label}.example").key == "paypal.example"
    assert skeleton("раypal") == "paypal"
    # Not punycode after all: it stands for itself.
    assert canonical("host", "xn--zz.corp.example").key == "xn--zz.corp.example"


def test_every_latin_letter_named_as_an_ascii_letter_is_read_as_it() -> None:
    misread = {
        f"U+{ord(char):04X} {unicodedata.name(char)}": skeleton(char)
        for letter, chars in named_lookalikes().items()
        for char in chars
        if skeleton(char) != letter
    }
    assert not misread
    # The small capitals and modifier letters are among them.
    assert {"\u1d04", "\u1d9c", "\u0262", "\u1d2c"} <= set("".join(named_lookalikes().values()))


@pytest.mark.parametrize(
    ("kind", "raw", "key"),
    [
        ("host", "xn--d01-l3x.corp.example", "dc01.corp.example"),  # dᴄ01, a small capital C
        ("user", "xn--co-nlc@corp.example", "ceo@corp.example"),  # cеo, a Cyrillic е
        ("user", "CORP\\XN--CO-NLC", "ceo@corp.example"),
        ("user", "xn--co-nlc", "ceo"),
        ("user", "EU\\xn--co-nlc", "ceo"),
        ("mailbox", "xn--co-nlc@corp.example", "ceo@corp.example"),
        ("user", "xn--zz@corp.example", "xn--zz@corp.example"),  # no punycode: itself
        # A sub-address whose plus is a look-alike inside the A-label (ceo＋alerts, ceo﹢x,
        # ceo⁺x, ceo₊x), or an ASCII tag after an A-label: delivered to the account itself.
        ("user", "xn--ceoalerts-d754c@corp.example", "ceo@corp.example"),
        ("user", "xn--ceox-7j9x@corp.example", "ceo@corp.example"),
        ("user", "xn--ceox-so7a@corp.example", "ceo@corp.example"),
        ("mailbox", "xn--ceox-2q7a@corp.example", "ceo@corp.example"),
        ("user", "xn--co-nlc+alerts@corp.example", "ceo@corp.example"),
    ],
)
def test_an_a_label_is_matched_by_what_it_looks_like_in_a_local_part_too(
    kind: str, raw: str, key: str
) -> None:
    identity = canonical(kind, raw, domains=DOMAINS)
    assert identity.key == key
    assert identity.label == key.partition("@")[0].split(".")[0]
    assert identity.value.isascii()  # the account acted on is the one written


@st.composite
def latin_lookalike(draw: st.DrawFn, text: str) -> str:
    """`text` with some of its letters swapped for Latin letters named as them."""
    letters = named_lookalikes()
    return "".join(
        draw(st.sampled_from(letters[c])) if c in letters and draw(st.booleans()) else c
        for c in text
    )


@given(st.lists(LABELS, min_size=1, max_size=3), st.data())
def test_a_name_written_with_latin_look_alikes_has_the_key_of_the_name_it_imitates(
    labels: list[str], data: st.DataObject
) -> None:
    name = ".".join(labels)
    spelled = _a_labels(data.draw(latin_lookalike(name)))
    assert canonical("host", spelled).key == name
    local = data.draw(latin_lookalike(labels[0]))
    if not local.isascii():
        local = "xn--" + local.encode("punycode").decode("ascii")
        assume(len(local) <= 64)  # what a local part may hold
    user = canonical("user", f"{local}@{spelled}.example", domains=DOMAINS)
    assert user.key == f"{labels[0]}@{name}.example"


def test_user_forms_without_a_mapping_still_name_the_local_part() -> None:
    identity = canonical("user", "CORP\\ceo", domains={})
    assert identity.namespace is Namespace.USER
    assert (identity.value, identity.key, identity.short) == ("corp\\ceo", "ceo", True)


@given(st.from_regex(rf"^{IPV6}$", fullmatch=True))
def test_the_ipv6_grammar_admits_only_what_ipaddress_reads(text: str) -> None:
    ipaddress.IPv6Address(text)


@given(st.ip_addresses(v=6), st.booleans(), st.booleans())
def test_the_ipv6_grammar_admits_every_ipv6_address(
    address: ipaddress.IPv6Address, exploded: bool, upper: bool
) -> None:
    text = address.exploded if exploded else str(address)
    assert canonical("ip", text.upper() if upper else text).network is not None


@pytest.mark.parametrize(("kind", "grammar"), [(k, k) for k in ("ip", "host", "user", "ticket")])
def test_every_string_of_a_kinds_grammar_is_read(kind: str, grammar: str) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(PATTERNS[grammar], fullmatch=True))
    def read(text: str) -> None:
        assume(text == text.strip())
        canonical(kind, text, domains=DOMAINS)

    read()
