"""Crafted bodies: nesting, lone surrogates, NUL, bidirectional controls, -0.0, NaN,
±Infinity, out-of-range numbers and keys given twice anywhere in a body get a 400 problem
naming the field, and nothing is recorded."""

from __future__ import annotations

import io
import json
import math
import unicodedata
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import exceptions
from rest_framework.test import APIClient

from approvals.models import Proposal
from audit.models import AuditEvent
from soc_console.parsers import MAX_DEPTH, StrictJSONParser
from tests import factories

pytestmark = pytest.mark.django_db

# Level 1 for the fixture's agent: accepted bodies are recorded as advisory, nothing runs.
TICKET = {
    "action": "create_ticket",
    "target": "SOC-4821",
    "params": {"title": "Phishing wave", "queue": "tier1"},
    "confidence": 0.8,
    "rationale": "Twelve reports of the same lure within an hour.",
    "evidence": [{"kind": "alert", "ref": "SIEM-4821"}],
    "severity": "medium",
}


def post(api: APIClient, text: str | bytes, *, key: str = "hostile-1") -> Any:
    return api.post(
        "/api/v1/proposals/",
        data=text,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def with_raw(field_path: str, raw: str, base: dict[str, Any] | None = None) -> str:
    """TICKET as JSON with the value at `field_path` replaced by the literal JSON text `raw`
    (NaN, -0.0 and lone surrogates cannot be made by json.dumps from Python values)."""
    body = json.loads(json.dumps(base or TICKET))
    *parents, last = field_path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = "@@RAW@@"
    return json.dumps(body).replace('"@@RAW@@"', raw)


def nested(depth: int) -> str:
    """A JSON value that is `depth` containers deep, alternating objects and arrays."""
    opened = "".join('{"a":' if n % 2 == 0 else "[" for n in range(depth))
    closed = "".join("}" if n % 2 == 0 else "]" for n in reversed(range(depth)))
    return opened + "1" + closed


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert field in problem["errors"], problem
    assert field in problem["detail"]
    assert not Proposal.objects.exists()
    assert not AuditEvent.objects.filter(event_type="proposal.submitted").exists()


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("confidence", "-0.0"),
        ("confidence", "-0e0"),
        ("confidence", "NaN"),
        ("confidence", "Infinity"),
        ("confidence", "-Infinity"),
        ("confidence", "1e400"),
        ("confidence", "1" + "0" * 400),  # an integer too large for a float
        ("params.title", "-0.0"),
        ("params.title", "NaN"),
        ("params.title", '"\\ud800"'),
        ("params.title", '"tail \\udfff"'),
        ("params.title", '"a\\u0000b"'),
        ("evidence.0.ref", '"\\udbff"'),
        ("evidence.0.note", "Infinity"),
        ("evidence.0.note", "-0.0"),
        ("rationale", '"why \\ud83d"'),
    ],
)
def test_unstorable_values_are_refused_naming_the_field(
    api: APIClient, field: str, raw: str
) -> None:
    assert_refused(post(api, with_raw(field, raw)), field)


def test_a_lone_surrogate_in_a_key_is_refused_and_named_escaped(api: APIClient) -> None:
    text = json.dumps(TICKET).replace('"queue"', '"q\\ud800"')
    response = post(api, text)
    assert_refused(response, "params.q\\ud800")
    assert response.content.decode("utf-8")  # the answer itself is valid UTF-8


def test_a_valid_surrogate_pair_is_a_character_and_accepted(api: APIClient) -> None:
    response = post(api, with_raw("params.title", '"Lure \\ud83d\\udc1f"'))
    assert response.status_code == 201, response.content
    assert Proposal.objects.get().params["title"] == "Lure \U0001f41f"


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_the_limit_passes_the_parser(api: APIClient, depth: int) -> None:
    # The body is level 1 and params level 2: `depth - 2` more levels inside params.title.
    response = post(api, with_raw("params.title", nested(depth - 2)))
    # Refused by the catalogue (a title is a string), not by the parser's nesting check.
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["params.title"]
    assert "Nested" not in json.dumps(response.json())


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 30000])
def test_nesting_beyond_the_limit_is_refused_naming_where(api: APIClient, depth: int) -> None:
    response = post(api, with_raw("params.title", nested(depth - 2)))
    problem = response.json()
    assert response.status_code == 400, problem
    [field] = problem["errors"]
    # The path down to the container that went one level too deep.
    assert field.startswith("params.title.a.0.a"), field
    assert len(field.split(".")) == MAX_DEPTH
    assert problem["errors"][field] == [f"Nested deeper than {MAX_DEPTH} levels."]
    assert not Proposal.objects.exists()


def test_deep_nesting_in_evidence_is_refused_too(api: APIClient) -> None:
    response = post(api, with_raw("evidence.0.note", nested(1000)))
    assert response.status_code == 400
    [field] = response.json()["errors"]
    assert field.startswith("evidence.0.note.a.0")


def test_a_bracket_inside_a_string_is_not_nesting(api: APIClient) -> None:
    body = {**TICKET, "params": {"title": '[[[[[[[[[[{{{{{{{{{{{{{{[[[[[[[[ \\" [[[['}}
    response = post(api, json.dumps(body))
    assert response.status_code == 201, response.content


def test_the_decision_api_refuses_them_too(api: APIClient, analyst) -> None:
    proposal = factories.proposal(factories.agent("other", grants={"isolate_host": 2}))
    client = APIClient()
    client.force_authenticate(analyst)
    response = client.post(
        f"/api/v1/proposals/{proposal.pk}/decisions/",
        data='{"verdict": "reject", "reason": "bad \\ud800 lure"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    proposal.refresh_from_db()
    assert proposal.status == "pending"


# --- bidirectional controls: text that shows as something else on the console.

# Unicode's Bidi_Control characters: the embeddings, overrides and isolates, read from the
# character database by their bidirectional class, and the three implicit marks (whose classes,
# L, R and AL, are those of letters).
EXPLICIT = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
BIDI_CONTROLS = [
    chr(c)
    for c in range(0x110000)
    if unicodedata.bidirectional(chr(c)) in EXPLICIT
    or unicodedata.name(chr(c), "").endswith(("TO-LEFT MARK", "TO-RIGHT MARK", "LETTER MARK"))
]


def test_the_bidirectional_controls_are_the_twelve_unicode_names() -> None:
    assert [f"{ord(c):04X}" for c in BIDI_CONTROLS] == [
        "061C", "200E", "200F", "202A", "202B", "202C", "202D", "202E",
        "2066", "2067", "2068", "2069",
    ]  # fmt: skip


def test_a_rationale_that_would_show_reversed_is_refused_naming_the_code_point(
    api: APIClient,
) -> None:
    # On the console "evil\u202eexe.txt" shows as "eviltxt.exe".
    response = post(api, json.dumps({**TICKET, "rationale": "Dropped evil\u202eexe.txt"}))
    assert_refused(response, "rationale")
    assert response.json()["errors"]["rationale"] == [
        "Must not contain bidirectional control characters (U+202E RIGHT-TO-LEFT OVERRIDE): "
        "they reorder how the text around them is shown."
    ]


def test_a_bidirectional_control_in_a_key_is_refused_and_named_escaped(api: APIClient) -> None:
    text = json.dumps(TICKET).replace('"queue"', '"q\\u2067"')
    response = post(api, text)
    assert_refused(response, "params.q\\u2067")
    assert "U+2067" in response.json()["errors"]["params.q\\u2067"][0]
    assert "\u2067" not in response.content.decode("utf-8")  # nor does it reorder the answer


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(
        [
            "rationale",
            "evidence.0.kind",
            "evidence.0.ref",
            "evidence.0.note",
            "evidence.0.url",
            "params.title",
            "params.queue",
            "target",
            "action",
        ]
    ),
    before=st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), max_size=8),
    control=st.sampled_from(BIDI_CONTROLS),
    after=st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), max_size=8),
    escaped=st.booleans(),
)
def test_any_text_with_a_bidirectional_control_is_refused_naming_field_and_code_point(
    api: APIClient, field: str, before: str, control: str, after: str, escaped: bool
) -> None:
    body = json.loads(json.dumps(TICKET))
    *parents, last = field.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = f"{before}{control}{after}"
    # Sent as the character itself or as its \uXXXX escape: the same string once parsed.
    response = post(api, json.dumps(body, ensure_ascii=escaped), key=uuid.uuid4().hex)
    assert_refused(response, field)
    [message] = response.json()["errors"][field]
    assert f"U+{ord(control):04X} {unicodedata.name(control)}" in message


def test_the_decision_api_refuses_a_bidirectional_control_in_a_reason(
    api: APIClient, analyst
) -> None:
    proposal = factories.proposal(factories.agent("other", grants={"isolate_host": 2}))
    client = APIClient()
    client.force_authenticate(analyst)
    response = client.post(
        f"/api/v1/proposals/{proposal.pk}/decisions/",
        data=json.dumps({"verdict": "reject", "reason": "not \u2066ours\u2069"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "U+2066" in response.json()["errors"]["reason"][0]
    proposal.refresh_from_db()
    assert proposal.status == "pending"


# --- keys given twice: a parser keeps one of them, and which one differs between parsers.


def test_a_target_given_twice_is_refused_naming_it(api: APIClient) -> None:
    # Python kept the last: the console would have acted on 198.18.9.9, the agent's own
    # checks (or a first-wins parser in front of it) seen 10.0.0.10.
    body = {**TICKET, "action": "block_ip", "target": "10.0.0.10"}
    text = json.dumps(body).replace(
        '"target": "10.0.0.10"', '"target": "10.0.0.10", "target": "198.18.9.9"'
    )
    response = post(api, text)
    assert_refused(response, "target")
    assert response.json()["errors"]["target"] == [
        'The key "target" is given more than once in one object.'
    ]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('"queue": "tier1"', '"queue": "tier1", "queue": "tier2"', "params.queue"),
        ('"kind": "alert"', '"kind": "alert", "kind": "ticket"', "evidence.0.kind"),
        ('"title": "Phishing wave"', '"title": {"a": 1, "a": 1}', "params.title.a"),
        ('"queue": "tier1"', '"queue": "tier1", "q\\ud800": 1, "q\\ud800": 2', "params.q\\ud800"),
    ],
)
def test_a_key_given_twice_at_any_depth_is_refused_naming_it(
    api: APIClient, old: str, new: str, field: str
) -> None:
    text = json.dumps(TICKET).replace(old, new)
    assert text != json.dumps(TICKET)
    assert_refused(post(api, text), field)


class Pairs(tuple):
    """A JSON object as its key-value pairs, in order, keys possibly repeated."""


def _render(node: Any) -> str:
    if isinstance(node, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {_render(v)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_render(v) for v in node) + "]"
    return json.dumps(node)


def _duplicates(node: Any, path: tuple[str | int, ...] = ()) -> set[str]:
    """The paths of every key given twice in an object, at any depth."""
    found: set[str] = set()
    if isinstance(node, Pairs):
        keys = [k for k, _ in node]
        found |= {".".join(map(str, (*path, k))) for k in keys if keys.count(k) > 1}
        for key, value in node:
            found |= _duplicates(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found |= _duplicates(value, (*path, index))
    return found


def _plain(node: Any) -> Any:
    if isinstance(node, Pairs):
        return {k: _plain(v) for k, v in node}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


KEYS = st.text("abc", min_size=1, max_size=2)  # few keys, so that some repeat
# Text the parser takes (no control, format or surrogate characters): only keys are at stake.
PLAIN_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), max_size=4)
TREES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), PLAIN_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(Pairs),
    ),
    max_leaves=16,
)
OBJECTS = st.lists(st.tuples(KEYS, TREES), max_size=4).map(Pairs)


@given(OBJECTS)
@settings(max_examples=400)
def test_the_parser_refuses_exactly_the_objects_with_a_key_given_twice(tree: Pairs) -> None:
    text = _render(tree).encode("utf-8")
    duplicates = _duplicates(tree)
    try:
        parsed = StrictJSONParser().parse(io.BytesIO(text))
    except exceptions.ValidationError as refused:
        [(field, [message])] = refused.detail.items()
        assert field in duplicates, (field, duplicates)
        assert f'The key "{field.rsplit(".", 1)[-1]}" is given more than once' in message
        return
    assert not duplicates
    assert parsed == _plain(tree)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    where=st.sampled_from(["", "params", "params.title", "evidence.0", "evidence.0.note"]),
    extra=st.lists(st.tuples(KEYS, TREES), max_size=3),
    key=st.sampled_from(["action", "target", "confidence", "a", "kind", "ref"]),
    first=TREES,
    second=TREES,
)
def test_a_key_given_twice_anywhere_in_a_proposal_is_refused_and_nothing_recorded(
    api: APIClient,
    where: str,
    extra: list[tuple[str, Any]],
    key: str,
    first: Any,
    second: Any,
) -> None:
    """A proposal with, at a generated place, an object holding `key` twice among other
    generated pairs."""
    tree: Any = Pairs((k, _from_plain(v)) for k, v in TICKET.items())
    duplicated = Pairs([*extra, (key, first), *extra[:1], (key, second)])
    tree = _placed(tree, [p for p in where.split(".") if p], duplicated)
    response = post(api, _render(tree), key=uuid.uuid4().hex)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    [field] = response.json()["errors"]
    assert field in _duplicates(tree), (field, _duplicates(tree))
    assert "more than once" in response.json()["errors"][field][0]
    assert not Proposal.objects.exists()


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return Pairs((k, _from_plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _placed(tree: Any, path: list[str], value: Any) -> Any:
    """`tree` with the value at `path` (keys and list indexes) replaced by `value`."""
    if not path:
        if isinstance(tree, Pairs) and isinstance(value, Pairs):
            return Pairs([*tree, *value])  # at the top: beside the proposal's own fields
        return value
    head, *rest = path
    if isinstance(tree, list):
        index = int(head)
        return [_placed(v, rest, value) if i == index else v for i, v in enumerate(tree)]
    pairs = list(tree)
    if not any(k == head for k, _ in pairs):
        pairs.append((head, None))
    return Pairs((k, _placed(v, rest, value) if k == head else v) for k, v in pairs)


# --- a property: whatever the values, the answer is a 2xx or a problem, and an accepted body
# never held a value the console cannot store and hash faithfully.

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
CHARACTERS = st.one_of(st.characters(), SURROGATES, st.just("\x00"))
TEXT = st.text(CHARACTERS, max_size=12)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(-0.0),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.floats(min_value=0, max_value=1),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=12,
)


def unstorable(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value) or (value == 0 and math.copysign(1, value) < 0)
    if isinstance(value, str):
        return (
            "\x00" in value
            or any("\ud800" <= c <= "\udfff" for c in value)
            or any(c in BIDI_CONTROLS for c in value)
        )
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    confidence=st.one_of(NUMBERS, st.just(0.8)),
    title=st.one_of(TEXT, VALUES),
    params=st.one_of(st.none(), st.dictionaries(TEXT, VALUES, max_size=2)),
    note=st.one_of(st.none(), VALUES),
    rationale=st.one_of(TEXT, st.just(TICKET["rationale"])),
)
def test_any_values_get_a_2xx_or_a_problem_and_never_a_500(
    api: APIClient,
    confidence: Any,
    title: Any,
    params: Any,
    note: Any,
    rationale: Any,
) -> None:
    body: dict[str, Any] = {
        **TICKET,
        "confidence": confidence,
        "rationale": rationale,
        "params": params if params is not None else {"title": title},
    }
    if note is not None:
        body["evidence"] = [{"kind": "alert", "ref": "SIEM-1", "note": note}]
    before = Proposal.objects.count()
    # ensure_ascii: lone surrogates travel as \\udxxx escapes, as a hostile client sends them.
    text = json.dumps(body, allow_nan=True, ensure_ascii=True)
    response = post(api, text, key=uuid.uuid4().hex)

    assert response.status_code in (200, 201, 400), response.content
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["errors"]
        assert Proposal.objects.count() == before
    if unstorable(body):
        assert response.status_code == 400
    if response.status_code == 201:
        stored = Proposal.objects.get(pk=response.json()["id"])
        assert stored.params == response.json()["params"]
        assert stored.confidence == response.json()["confidence"]


@pytest.mark.parametrize("charset", ["utf-7", "cp037", "utf-16", "latin-1", "bogus"])
def test_a_body_in_another_charset_than_utf8_is_refused_and_nothing_recorded(
    api: APIClient, charset: str
) -> None:
    # JSON is UTF-8: a UTF-7 body would be checked as what it decodes to here and read as
    # something else by an agent's own tooling.
    text = json.dumps(TICKET)
    body = text.encode(charset) if charset != "bogus" else text.encode()
    response = api.post(
        "/api/v1/proposals/",
        data=body,
        content_type=f"application/json; charset={charset}",
        HTTP_IDEMPOTENCY_KEY=f"charset-{charset}",
    )
    assert response.status_code == 415, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert f"charset={charset}" in response.json()["detail"]
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_utf8_by_any_of_its_names_is_read(api: APIClient, charset: str) -> None:
    response = api.post(
        "/api/v1/proposals/",
        data=json.dumps(TICKET).encode(),
        content_type=f"application/json; charset={charset}",
        HTTP_IDEMPOTENCY_KEY=f"charset-{charset}",
    )
    assert response.status_code == 201, response.content


def test_a_number_too_long_to_read_is_refused_in_the_apis_words(api: APIClient) -> None:
    response = post(api, with_raw("params.title", "9" * 5000))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "more than 4,300 digits" in detail
    assert "sys." not in detail  # not the interpreter's advice
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_authorization_scheme_is_read_in_any_case(
    agent_with_key: factories.AgentWithKey, scheme: str
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {agent_with_key.raw_key}")
    response = client.get("/api/v1/agent/")
    assert response.status_code == 200, response.content
