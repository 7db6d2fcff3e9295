"""The OpenAPI schema against what the API really answers, and against what it really accepts.

Real responses are validated against the schema's own components with every object closed
(a field the payload has and the schema lacks fails, and every field the schema calls required
must be there), so the payloads and the serializers that document them cannot drift apart. The
proposal variants' target kinds are held to the catalogue's validators by hypothesis.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient

from agents import catalogue
from approvals import tasks
from approvals.contract import TARGET_SCHEMAS
from approvals.models import Execution
from approvals.serializers import ProposalInSerializer
from soc_console.contract import WHITESPACE_CLASS, StrictCharField, text_pattern
from tests.api.test_proposals_api import BODY, post

pytestmark = pytest.mark.django_db


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema, closed: `nullable` becomes a null alternative, and every
    object that does not say otherwise refuses properties it does not name."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture
def document(db: None) -> dict[str, Any]:
    response = APIClient().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def conforms(document: dict[str, Any]):
    components = _as_json_schema(document["components"])

    def check(body: Any, component: str) -> None:
        schema = {"$ref": f"#/components/schemas/{component}", "components": components}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
        )

    return check


def _documented(document: dict[str, Any], path: str, method: str, status: int) -> str:
    """The component the schema names for this answer, and the media type it promises."""
    response = document["paths"][path][method]["responses"][str(status)]
    ((media_type, content),) = response["content"].items()
    return media_type, content["schema"]["$ref"].rsplit("/", 1)[-1]


def _answer(document, conforms, response, path: str, method: str) -> dict[str, Any]:
    media_type, component = _documented(document, path, method, response.status_code)
    assert response["Content-Type"] == media_type
    body = response.json()
    conforms(body, component)
    return body


@pytest.fixture
def analyst_api(analyst) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=analyst).key}")
    return client


def test_a_decided_executed_proposal_matches_the_schema(
    api, analyst_api, document, conforms
) -> None:
    created = post(api, {**BODY, "confidence": 0.7})  # block_ip at level 3, below 0.9: pending
    body = _answer(document, conforms, created, "/api/v1/proposals/", "post")
    assert body["status"] == "pending" and body["execution"] is None
    decided = analyst_api.post(
        f"/api/v1/proposals/{body['id']}/decisions/",
        {"verdict": "approve", "reason": "seen it"},
        format="json",
    )
    path = "/api/v1/proposals/{proposal_id}/"
    _answer(document, conforms, decided, path + "decisions/", "post")
    tasks.run_execution(str(Execution.objects.get(proposal_id=body["id"]).pk))

    shown = _answer(document, conforms, api.get(f"/api/v1/proposals/{body['id']}/"), path, "get")
    assert shown["decisions"][0]["verdict"] == "approve"
    assert shown["execution"]["status"] == "succeeded" and shown["execution"]["result"]
    rolled = analyst_api.post(
        f"/api/v1/proposals/{body['id']}/rollback/", {"reason": "false positive"}, format="json"
    )
    assert _answer(document, conforms, rolled, path + "rollback/", "post")["execution"]


def test_a_rejected_and_a_withdrawn_proposal_match_the_schema(
    api, analyst_api, document, conforms
) -> None:
    path = "/api/v1/proposals/{proposal_id}/"
    first = post(api, {**BODY, "confidence": 0.7}, key="one").json()
    rejected = analyst_api.post(
        f"/api/v1/proposals/{first['id']}/decisions/",
        {"verdict": "reject", "reason": "a known scanner"},
        format="json",
    )
    assert _answer(document, conforms, rejected, path + "decisions/", "post")["status"] == (
        "rejected"
    )
    second = post(api, {**BODY, "confidence": 0.7, "target": "203.0.113.9"}, key="two").json()
    withdrawn = api.post(f"/api/v1/proposals/{second['id']}/withdraw/")
    assert _answer(document, conforms, withdrawn, path + "withdraw/", "post")["status"] == (
        "withdrawn"
    )


def test_a_blocked_proposal_matches_the_schema(api, document, conforms) -> None:
    blocked = {**BODY, "action": "reset_password", "target": "jdoe@corp.example", "params": {}}
    response = post(api, blocked)
    assert response.status_code == 403
    body = _answer(document, conforms, response, "/api/v1/proposals/", "post")
    assert body["proposal"]["status"] == "blocked"
    assert body["proposal"]["code"] == "action_not_permitted"


def test_a_list_page_matches_the_schema(api, document, conforms, monkeypatch) -> None:
    from rest_framework.pagination import PageNumberPagination

    # PAGE_SIZE is read once, into the class; two a page shows both links with three proposals.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    for index in range(3):
        post(api, {**BODY, "target": f"203.0.113.{index + 1}"}, key=f"k{index}")
    first = _answer(document, conforms, api.get("/api/v1/proposals/"), "/api/v1/proposals/", "get")
    assert first["count"] == 3 and first["next"] and first["previous"] is None
    second = _answer(document, conforms, api.get(first["next"]), "/api/v1/proposals/", "get")
    assert len(second["results"]) == 1 and second["previous"] and second["next"] is None


def test_the_agent_profile_matches_the_schema(api, document, conforms) -> None:
    profile = _answer(document, conforms, api.get("/api/v1/agent/"), "/api/v1/agent/", "get")
    assert profile["policy"]["grants"]["block_ip"] == 3 and profile["callback_url"] is None
    put = api.put("/api/v1/agent/", {"callback_url": "https://agent.example/hook"}, format="json")
    assert _answer(document, conforms, put, "/api/v1/agent/", "put")["callback_secret"]
    cleared = api.put("/api/v1/agent/", {"callback_url": ""}, format="json")
    assert _answer(document, conforms, cleared, "/api/v1/agent/", "put")["callback_secret"] is None


def test_errors_match_the_documented_problem(api, agent_with_key, document, conforms) -> None:
    invalid = post(api, {**BODY, "confidence": 2})
    assert _answer(document, conforms, invalid, "/api/v1/proposals/", "post")["errors"]
    missing = api.get("/api/v1/proposals/00000000-0000-0000-0000-000000000000/")
    _answer(document, conforms, missing, "/api/v1/proposals/{proposal_id}/", "get")
    post(api, BODY, key="same")
    reused = post(api, {**BODY, "confidence": 0.5}, key="same")
    assert _answer(document, conforms, reused, "/api/v1/proposals/", "post")["code"] == (
        "idempotency_key_reused"
    )
    anonymous = APIClient().get("/api/v1/agent/")
    _answer(document, conforms, anonymous, "/api/v1/agent/", "get")
    assert anonymous["WWW-Authenticate"]

    key = agent_with_key.agent.keys.get()
    key.rate_limit_per_minute = 1
    key.save(update_fields=["rate_limit_per_minute"])
    api.get("/api/v1/agent/")
    limited = api.get("/api/v1/agent/")
    _answer(document, conforms, limited, "/api/v1/agent/", "get")
    assert int(limited["Retry-After"]) >= 1


def test_every_operation_documents_its_errors_as_problems(document) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"401", "403"} <= statuses, (method, path)
            for status, response in operation["responses"].items():
                if status.startswith("4") or status.startswith("5"):
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )
            if "requestBody" in operation:
                assert operation["requestBody"]["required"] is True, (method, path)
                assert "413" in statuses, (method, path)
            for status in ("429", "503"):
                if status in statuses:
                    assert operation["responses"][status]["headers"]["Retry-After"]["required"]


def test_every_catalogue_action_is_a_documented_variant(document) -> None:
    variants = document["components"]["schemas"]["ProposalInRequest"]
    assert sorted(variants["discriminator"]["mapping"]) == sorted(catalogue.ACTIONS)
    assert set(TARGET_SCHEMAS) == set(catalogue.TARGET_KINDS)
    for name, kind in catalogue.ACTIONS.items():
        ref = variants["discriminator"]["mapping"][name].rsplit("/", 1)[-1]
        variant = document["components"]["schemas"][ref]
        assert variant["additionalProperties"] is False
        assert (
            TARGET_SCHEMAS[kind.target_kind]["description"]
            == (variant["properties"]["target"]["description"])
        )
        params = document["components"]["schemas"][
            variant["properties"]["params"]["$ref"].rsplit("/", 1)[-1]
        ]
        assert set(params.get("properties", {})) == set(kind.params)


# --- the target kinds' schemas accept exactly what the catalogue's validators accept ---------


def _ecmascript_end(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with each pattern's final `$` as ECMAScript reads it, the end of the text:
    jsonschema matches with Python's re, whose `$` also matches before a final newline."""
    for branch in (schema, *schema.get("anyOf", []), *schema.get("allOf", [])):
        if branch.get("pattern", "").endswith("$"):
            branch["pattern"] = branch["pattern"][:-1] + r"\Z"
    return schema


def _kind_validator(kind: str) -> Draft202012Validator:
    target = _ecmascript_end(copy.deepcopy(TARGET_SCHEMAS[kind]))
    schema = {"type": "string", "maxLength": 255, **target}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _accepted(kind: str, value: str) -> bool:
    """As the API takes a target: the body's field first (a string, no NUL), then the kind."""
    action = next(a for a in catalogue.ACTIONS.values() if a.target_kind == kind)
    try:
        action.clean_target(ProposalInSerializer().fields["target"].run_validation(value))
    except (catalogue.TargetError, ValidationError):
        return False
    return True


def _valid_targets(kind: str) -> st.SearchStrategy[str]:
    """Strings from every pattern of the kind's schema (and addresses for `ip`) that the
    schema accepts as a whole."""
    schema = TARGET_SCHEMAS[kind]
    branches = [schema, *schema.get("anyOf", []), *schema.get("allOf", [])]
    strategies = [st.from_regex(b["pattern"], fullmatch=True) for b in branches if "pattern" in b]
    if kind == "ip":
        strategies.append(st.ip_addresses().map(str))
    validator = _kind_validator(kind)
    return st.one_of(strategies).filter(validator.is_valid)


# Targets near the boundary: valid ones with a character changed, inserted or dropped, white
# space of every kind Python trims among them.
def _near(kind: str) -> st.SearchStrategy[str]:
    spaces = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
    alphabet = st.sampled_from("aZ09-.:/@<>\\_%+\x00\u00e9\u0661\ufeff" + spaces)
    # Built once: a strategy from a regex is checked when first drawn from, and a new one for
    # each example spent most of the test's time on that.
    valid = _valid_targets(kind)

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        value = draw(valid)
        index = draw(st.integers(0, len(value)))
        how = draw(st.sampled_from(["insert", "replace", "drop"]))
        char = draw(alphabet)
        if how == "insert":
            return value[:index] + char + value[index:]
        if how == "replace":
            return value[:index] + char + value[index + 1 :]
        return value[:index] + value[index + 1 :]

    return st.one_of(valid, mutated())


# Spellings where a schema and a validator are easy to get apart.
EDGE_CASES = {
    "ip": [
        *(" 10.0.0.10", "10.0.0.10\n"),
        *("fe80::1%eth0", "010.0.0.1", "10.0.0.1/33", "10.0.0.0/8", "::ffff:10.0.0.1", "1.2.3"),
    ],
    "host": [
        *("dc01\t", "\u00a0dc01"),
        *("1.2.3.4", "1-2.example", "-a.example", "a" * 64, "dc01.", "dc01..corp", "é.example"),
    ],
    "user": [
        *("ceo@corp.example ", "\u2028ceo"),
        *("CORP\\jdoe", "jdoe@corp", "jdoe@corp.example", "\\jdoe", "a@b.c0"),
    ],
    "mailbox": ["<a@b>\x85", "<a@b>", "<a b@c>", "<a\x00@b>", "<@b>", "jdoe@corp.example"],
    "ticket": ["SOC-1234\r", "SOC-1234", "-SOC", "SOC 1", "a" * 129, "SOC-١٢"],
}


@pytest.mark.parametrize("kind", sorted(catalogue.TARGET_KINDS))
def test_a_target_kinds_schema_accepts_exactly_what_its_validator_accepts(kind: str) -> None:
    validator = _kind_validator(kind)
    for value in EDGE_CASES[kind]:
        assert validator.is_valid(value) == _accepted(kind, value), json.dumps(value)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_near(kind))
    def agree(value: str) -> None:
        assert validator.is_valid(value) == _accepted(kind, value), json.dumps(value)

    agree()


def test_the_whitespace_class_is_what_python_trims() -> None:
    trimmed = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    spelled = {chr(c) for c in range(0x3001) if re.fullmatch(f"[{WHITESPACE_CLASS}]", chr(c))}
    assert spelled == trimmed


@given(st.text(max_size=12))
@settings(max_examples=300)
def test_text_patterns_say_what_the_fields_accept(value: str) -> None:
    for minimum in (0, 1, 3):
        field = StrictCharField(min_length=minimum or None, allow_blank=minimum == 0)
        try:
            field.run_validation(value)
            accepted = True
        except Exception:
            accepted = False
        assert bool(re.search(text_pattern(min_length=minimum), value)) == accepted, (
            minimum,
            value,
        )


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["version", "lang", "format", "x"]) | st.text(min_size=1, max_size=8),
    value=st.text(max_size=20),
)
def test_the_schema_reads_only_a_known_format_and_copies_nothing_into_its_headers(
    name: str, value: str
) -> None:
    response = APIClient().get("/api/v1/schema/", {name: value})
    if name == "format" and value in ("yaml", "json", "openapi", "openapi-json"):
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith('inline; filename="')
        return
    assert response.status_code == 400, (name, value)
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["code"] == "invalid" and name in body["errors"]
    assert "Content-Disposition" not in response  # where the query's text went before


def test_the_schemas_file_name_names_no_version_from_the_query() -> None:
    schema = APIClient().get("/api/v1/schema/", {"format": "yaml"})
    assert schema.status_code == 200
    assert schema["Content-Disposition"] == 'inline; filename="SOC Approval Console API.yaml"'
    refused = APIClient().get("/api/v1/schema/?version=x%22;%20filename*=UTF-8''evil.html")
    assert refused.status_code == 400
    assert "evil" not in refused.get("Content-Disposition", "")
