"""Targets through the agent API: one identity, matched to the inventory, shown beside the
spelling the agent used."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents import targets
from agents.models import Asset, AssetAlias, Policy
from agents.services.assets import REMATCHED, aliases_rematch
from approvals import services
from approvals.models import ConnectorState, Execution, Proposal
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def post(client: APIClient, body: dict[str, Any], key: str | None = None):
    return client.post(
        "/api/v1/proposals/",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def proposal_body(action: str, target: str, confidence: float = 0.95) -> dict[str, Any]:
    return {"action": action, "target": target, "confidence": confidence, "rationale": "Seen."}


@pytest.fixture
def bold(db: None) -> APIClient:
    """An agent trusted to act alone on anything but critical assets."""
    agent = factories.agent(
        "bold-bot",
        grants={
            "isolate_host": 3,
            "block_ip": 3,
            "update_firewall_policy": 4,
            "disable_user": 4,
            "quarantine_email": 3,
        },
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.raw_key}")
    return client


def test_a_proposal_shows_the_target_as_sent_its_identity_the_asset_and_the_routing(
    bold, analyst, senior
) -> None:
    factories.asset("dc01.corp.example", criticality="critical", group="domain-controllers")
    response = post(bold, proposal_body("isolate_host", "DC01.Corp.Example."))
    assert response.status_code == 201
    body = response.json()
    assert body["target"] == "DC01.Corp.Example."
    assert body["target_canonical"] == "dc01.corp.example"
    assert body["asset"] == {"identifier": "dc01.corp.example", "criticality": "critical"}
    assert body["routing"] == {
        "outcome": "pending",
        "code": None,
        "reason": body["explanation"],
        "policy_version": 1,
        "shadow_version": None,
    }
    services.proposal_approve(proposal_id=body["id"], analyst=analyst)
    services.proposal_approve(proposal_id=body["id"], analyst=senior)
    again = bold.get(f"/api/v1/proposals/{body['id']}/").json()
    # Decided since: the status moved on, what routing made of it did not.
    assert (again["status"], again["routing"]["outcome"]) == ("approved", "pending")
    submitted = AuditEvent.objects.get(event_type="proposal.submitted")
    assert submitted.data["target"] == "DC01.Corp.Example."
    assert submitted.data["target_canonical"] == "dc01.corp.example"
    assert submitted.data["asset"] == "dc01.corp.example"


def test_a_blocked_proposal_says_why_in_its_routing(bold) -> None:
    response = post(bold, proposal_body("reset_password", "CORP\\jdoe"))
    assert response.status_code == 403
    routing = response.json()["proposal"]["routing"]
    assert (routing["outcome"], routing["code"]) == ("blocked", "action_not_permitted")


def test_the_connector_acts_on_the_canonical_target(bold) -> None:
    response = post(bold, proposal_body("block_ip", "::ffff:c612:9"))
    body = response.json()
    assert (body["status"], body["target_canonical"]) == ("auto_approved", "198.18.0.9")
    assert body["asset"] is None
    assert body["routing"]["outcome"] == "auto_approved"
    services.execution_run(execution_id=Execution.objects.get(proposal_id=body["id"]).pk)
    assert ConnectorState.objects.get(connector="firewall").target == "198.18.0.9"


def test_a_second_spelling_of_the_same_request_is_a_replay(bold) -> None:
    first = post(bold, proposal_body("block_ip", "198.18.0.9"), key="once")
    assert first.status_code == 201
    same = post(bold, proposal_body("block_ip", "0xc6120009"), key="once")
    assert same.status_code == 200
    assert same.json()["id"] == first.json()["id"]
    other = post(bold, proposal_body("block_ip", "198.18.0.10"), key="once")
    assert other.status_code == 409
    assert Proposal.objects.count() == 1


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("isolate_host", "dc01\x07.corp.example"),
        ("isolate_host", "☃.corp.example"),
        ("isolate_host", "host.10"),
        ("block_ip", "10.0.0.256"),
        ("block_ip", "08.0.0.1"),
        ("disable_user", "CORP\\"),
        ("quarantine_email", "CORP\\ceo"),
        # White space around a target: the schema's pattern refuses it, and so does the API.
        ("block_ip", " 10.0.0.10"),
        ("isolate_host", "dc01\t"),
        ("disable_user", "ceo@corp.example\u00a0"),
        ("quarantine_email", "\u2028<abc@mail.example>"),
    ],
)
def test_an_unreadable_target_is_a_400_naming_it_and_nothing_is_recorded(
    bold, action: str, target: str
) -> None:
    response = post(bold, proposal_body(action, target))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert f"For {action} the target" in response.json()["errors"]["target"][0]
    assert not Proposal.objects.exists()
    assert not AuditEvent.objects.filter(event_type="proposal.submitted").exists()


def test_a_padded_address_is_refused_with_both_readings(bold) -> None:
    # 10.0.0.10, critical, written with zeros: inet_aton would act on 8.0.0.8 unwatched.
    factories.asset("10.0.0.10", kind="ip", criticality="critical")
    response = post(bold, proposal_body("block_ip", "010.000.000.010"))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"]["target"] == [
        "For block_ip the target '010.000.000.010' is ambiguous: a part with a leading zero is "
        "octal to resolvers (8.0.0.8) and decimal to people (10.0.0.10). Write the address "
        "without leading zeros."
    ]
    assert not Proposal.objects.exists()


@st.composite
def padded_address(draw: st.DrawFn) -> str:
    """A dotted IPv4 text (1 to 4 parts, decimal or hex) with at least one part written with
    a leading zero, alone, before a prefix, or carried in IPv6."""
    count = draw(st.integers(1, 4))
    limits = [0xFF] * (count - 1) + [256 ** (5 - count) - 1]
    spellings = ["{}", "0x{:x}", "0{}", "00{:o}"]  # the last two with a leading zero
    parts = [
        draw(st.sampled_from(spellings)).format(draw(st.integers(0, limit))) for limit in limits
    ]
    padded = draw(st.integers(0, count - 1))
    parts[padded] = "0" * draw(st.integers(1, 3)) + str(draw(st.integers(0, limits[padded])))
    text = ".".join(parts)
    forms = [text, f"{text}/{draw(st.integers(0, 32))}"]
    if count == 4:
        forms += [f"::ffff:{text}", f"64:ff9b::{text}"]
    return draw(st.sampled_from(forms))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(target=padded_address(), action=st.sampled_from(["block_ip", "isolate_host"]))
def test_no_address_with_a_leading_zero_is_recorded(bold, target: str, action: str) -> None:
    if action == "isolate_host":
        target = target.partition("/")[0]  # a host is no network
    response = post(bold, proposal_body(action, target))
    assert response.status_code == 400, (target, response.json())
    assert response["Content-Type"] == "application/problem+json"
    [message] = response.json()["errors"]["target"]
    assert "leading zero" in message, message
    assert not Proposal.objects.exists()
    assert not AuditEvent.objects.filter(event_type="proposal.submitted").exists()


@pytest.mark.parametrize(
    ("action", "target", "identifier"),
    [
        # dᴄ01: a Latin small capital C
        ("isolate_host", "xn--d01-l3x.corp.example", "dc01.corp.example"),
        # cеo: a Cyrillic е, in the local part (the domain form was matched already)
        ("disable_user", "xn--co-nlc@corp.example", "ceo@corp.example"),
        ("disable_user", "ceo@xn--crp-sed.example", "ceo@corp.example"),  # cоrp
        ("quarantine_email", "xn--co-nlc@corp.example", "ceo@corp.example"),
    ],
)
def test_a_look_alike_of_a_critical_asset_waits_for_humans(
    bold, action: str, target: str, identifier: str
) -> None:
    factories.asset("dc01.corp.example", criticality="critical")
    factories.asset("ceo@corp.example", kind="user", criticality="critical")
    body = post(bold, proposal_body(action, target)).json()
    assert body["asset"] == {"identifier": identifier, "criticality": "critical"}
    assert body["status"] == "pending", body
    assert body["target_canonical"] == target  # acted on as written, once approved
    assert not Execution.objects.exists()


SUB_ADDRESS_TAGS = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-"),
    min_size=0,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    tag=SUB_ADDRESS_TAGS,
    action=st.sampled_from(["disable_user", "quarantine_email"]),
    upper=st.booleans(),
)
def test_a_sub_address_of_a_critical_account_waits_for_humans(
    bold, tag: str, action: str, upper: bool
) -> None:
    """`ceo+anything@` is delivered to `ceo@`: an agent that writes a tag after a `+` reaches
    the account's critical inventory entry, and the action acts on what it wrote."""
    if not Asset.objects.exists():
        factories.asset("ceo@corp.example", kind="user", criticality="critical")
        # Every example is another open proposal of the one agent: its breaker stays out of it.
        Policy.objects.update(max_pending=10**6, max_proposals_per_minute=10**6)
    local = "CEO" if upper else "ceo"
    target = f"{local}+{tag}@corp.example"
    body = post(bold, proposal_body(action, target)).json()
    assert body.get("asset") == {"identifier": "ceo@corp.example", "criticality": "critical"}, body
    assert body["status"] == "pending", body
    assert body["target_canonical"] == target.lower()
    assert not Execution.objects.exists()


def test_names_stored_before_a_spelling_was_learnt_are_matched_after_the_rematch(bold) -> None:
    """An inventory name keeps the key it was stored with. The rematch (which the migration
    that taught the canonicaliser runs) stores each name as targets are read now, so that a
    look-alike spelling learnt since reaches the asset saved before it."""
    factories.asset("dc01.corp.example", criticality="critical", aliases=("dc01-old.corp.example",))
    factories.asset("ceo@corp.example", kind="user", criticality="critical")
    stale = {"key": "stored-earlier", "label": "stored-earlier"}
    assert AssetAlias.objects.update(**stale) == 3
    unmatched = post(bold, proposal_body("isolate_host", "xn--d01-l3x.corp.example")).json()
    assert unmatched["asset"] is None  # what a name stored earlier than its spelling meets

    assert aliases_rematch() == 3
    assert not AssetAlias.objects.filter(key="stored-earlier").exists()
    for target, identifier in (
        ("xn--d01-l3x.corp.example", "dc01.corp.example"),
        ("dc01-old.corp.example", "dc01.corp.example"),
        ("xn--co-nlc@corp.example", "ceo@corp.example"),
    ):
        action = "disable_user" if "@" in target else "isolate_host"
        body = post(bold, proposal_body(action, target)).json()
        assert body["asset"] == {"identifier": identifier, "criticality": "critical"}, body
        assert body["status"] == "pending", body
    assert aliases_rematch() == 0  # stored as read: nothing to do twice


def test_the_rematch_runs_on_the_migrations_historical_model(bold) -> None:
    factories.asset("dc01.corp.example", criticality="critical")
    AssetAlias.objects.update(key="stored-earlier")
    state = MigrationExecutor(connection).loader.project_state(("agents", "0007_rematch_aliases"))
    assert aliases_rematch(state.apps.get_model("agents", "AssetAlias")) == 1
    assert AssetAlias.objects.get().key == "dc01.corp.example"
    assert set(targets.alias_columns(targets.of_asset("host", "dc01"))) == set(REMATCHED)


def test_a_short_name_takes_the_most_critical_asset_it_may_be(bold) -> None:
    factories.asset("dc01.corp.example", criticality="low")
    factories.asset("dc01.lab.example", criticality="critical")
    body = post(bold, proposal_body("isolate_host", "dc01")).json()
    assert (body["status"], body["criticality"]) == ("pending", "critical")
    assert body["asset"]["identifier"] == "dc01.lab.example"
    # And a name the inventory knows only by its short form.
    factories.asset("pay-db01", criticality="critical")
    body = post(bold, proposal_body("isolate_host", "PAY-DB01.corp.example.")).json()
    assert body["asset"]["identifier"] == "pay-db01"


def test_a_users_local_part_takes_the_most_critical_user_it_may_be(bold, settings) -> None:
    settings.TARGET_DOMAINS = {}
    factories.asset("ceo@corp.example", kind="user", criticality="critical")
    factories.asset("ceo@lab.example", kind="user", criticality="low")
    for target in ("ceo", "CORP\\ceo", "ceo@CORP"):
        body = post(bold, proposal_body("disable_user", target)).json()
        assert (body["status"], body["criticality"]) == ("pending", "critical"), target
        assert body["asset"]["identifier"] == "ceo@corp.example"


def test_aliases_are_names_of_their_asset_in_any_namespace(bold) -> None:
    factories.asset(
        "dc01.corp.example",
        criticality="critical",
        aliases=("LDAP.corp.example.", "::ffff:10.0.0.11", "10.0.9.0/24"),
    )
    assert set(AssetAlias.objects.values_list("value", flat=True)) == {
        "dc01.corp.example",
        "ldap.corp.example",
        "10.0.0.11",
        "10.0.9.0/24",
    }
    for action, target in [
        ("isolate_host", "ldap"),
        ("block_ip", "10.0.0.11"),
        ("isolate_host", "167774475"),  # 10.0.0.11 as one number
        ("block_ip", "10.0.9.77"),  # inside an inventoried network
        ("update_firewall_policy", "10.0.0.0/16"),  # a network around both
    ]:
        body = post(bold, proposal_body(action, target)).json()
        assert body["asset"] == {"identifier": "dc01.corp.example", "criticality": "critical"}
        assert body["status"] == "pending", target


def test_a_spelling_does_not_escape_the_asset_scope(db) -> None:
    factories.asset("ws-01.corp.example", criticality="low", group="workstations")
    factories.asset("ws-01.lab.example", criticality="low", group="servers")
    scoped = factories.agent("ws-bot", grants={"isolate_host": 3}, scope_groups=["workstations"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {scoped.raw_key}")
    assert post(client, proposal_body("isolate_host", "ws-01.corp.example")).status_code == 201
    # `ws-01` may be the server as well: outside the scope, whatever else it may be.
    refused = post(client, proposal_body("isolate_host", "WS-01"))
    assert refused.status_code == 403
    assert refused.json()["code"] == "target_out_of_scope"


def test_the_schema_documents_the_new_fields(db) -> None:
    document = APIClient().get("/api/v1/schema/?format=json").json()
    schemas = document["components"]["schemas"]

    def resolved(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema or "allOf" in schema:
            schema = schema["allOf"][0] if "allOf" in schema else schema
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    proposal = schemas["ProposalOut"]["properties"]
    assert {"target", "target_canonical", "asset", "routing"} <= set(proposal)
    assert proposal["asset"]["nullable"] is True
    assert set(resolved(proposal["asset"])["properties"]) == {"identifier", "criticality"}
    routing = resolved(proposal["routing"])["properties"]
    assert set(routing) == {"outcome", "code", "reason", "policy_version", "shadow_version"}
    assert set(resolved(routing["outcome"])["enum"]) == {
        "blocked",
        "advisory",
        "flagged",
        "pending",
        "auto_approved",
    }
    assert routing["shadow_version"]["nullable"] is True
