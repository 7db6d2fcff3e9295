"""Guardrails that a careless spelling or a late click must not get around."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from approvals import connectors, services
from approvals.models import Execution, Proposal
from audit.models import AuditEvent
from soc_console.errors import NotPending, WrongState
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("target", ["10.0.0.10", "10.0.0.10/32", "10.0.0.0/8", "10.0.0.8/29"])
def test_a_target_that_touches_a_critical_address_needs_two_humans(agent_with_key, target):
    factories.asset("10.0.0.10", kind="ip", criticality="critical")
    proposal = factories.proposal(agent_with_key, action="block_ip", target=target, confidence=0.99)
    assert proposal.status == "pending"
    assert proposal.criticality == "critical"
    assert proposal.required_approvals == 2


def test_a_network_that_touches_no_inventoried_address_is_not_critical(agent_with_key):
    factories.asset("10.0.0.10", kind="ip", criticality="critical")
    proposal = factories.proposal(
        agent_with_key, action="block_ip", target="192.0.2.0/24", confidence=0.99
    )
    assert proposal.status == "auto_approved"


def test_host_names_match_the_inventory_whatever_their_case(agent_with_key):
    factories.asset("DC01.corp.example", criticality="critical")
    proposal = factories.proposal(agent_with_key, target="dc01.CORP.example")
    assert proposal.criticality == "critical"


@pytest.mark.parametrize(
    ("identifier", "kind", "action", "spelling"),
    [
        ("dc01.corp.example", "host", "isolate_host", "dc01"),
        ("10.0.0.10", "ip", "update_firewall_policy", "::ffff:10.0.0.10"),
        ("ceo@corp.example", "user", "disable_user", "CORP\\ceo"),
    ],
)
def test_the_reported_spellings_of_critical_assets_still_need_two_humans(
    settings, identifier, kind, action, spelling
) -> None:
    settings.TARGET_DOMAINS = {"corp": "corp.example"}
    factories.asset(identifier, kind=kind, criticality="critical")
    bot = factories.agent(
        "bold-bot", grants={"isolate_host": 3, "update_firewall_policy": 4, "disable_user": 4}
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.raw_key}")
    body = {"action": action, "target": spelling, "confidence": 0.95, "rationale": "Sure."}
    response = client.post(
        "/api/v1/proposals/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201
    proposal = response.json()
    assert (proposal["status"], proposal["criticality"], proposal["required_approvals"]) == (
        "pending",
        "critical",
        2,
    )
    assert not Execution.objects.exists()


def test_an_expired_proposal_cannot_be_approved_even_before_the_sweeper_runs(
    agent_with_key, analyst
):
    proposal = factories.proposal(agent_with_key)
    Proposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now() - timedelta(1))
    with pytest.raises(NotPending, match="expired"):
        services.proposal_approve(proposal_id=proposal.pk, analyst=analyst)
    assert not Execution.objects.exists()


def test_the_emergency_stop_holds_each_execution_with_its_own_event(
    agent_with_key, analyst, manager
):
    proposal = factories.proposal(agent_with_key)
    services.proposal_approve(proposal_id=proposal.pk, analyst=analyst)
    services.emergency_stop_engage(by=manager, reason="bridge call")
    assert Execution.objects.get(proposal=proposal).status == "held"
    held = AuditEvent.objects.get(proposal_id=proposal.pk, event_type="execution.held")
    assert held.data["why"] == "emergency stop"
    assert held.actor == "maya"


def test_no_rollback_while_the_emergency_stop_is_engaged(agent_with_key, analyst, manager):
    proposal = factories.proposal(
        agent_with_key, action="block_ip", target="198.18.0.4", confidence=0.95
    )
    execution = Execution.objects.get(proposal=proposal)
    services.execution_run(execution_id=execution.pk)
    services.emergency_stop_engage(by=manager, reason="bridge call")
    with pytest.raises(WrongState, match="emergency stop"):
        services.rollback_request(
            execution_id=execution.pk, analyst=analyst, reason="false positive"
        )
    assert Execution.objects.get(pk=execution.pk).status == "succeeded"


def test_undoing_one_call_keeps_what_later_calls_changed() -> None:
    first = connectors.perform(
        action="isolate_host", target="ws-9.corp.example", params={}, idempotency_key="k-isolate"
    )
    connectors.perform(
        action="kill_process",
        target="ws-9.corp.example",
        params={"pid": 4242},
        idempotency_key="k-kill",
    )
    connectors.undo(
        action="isolate_host",
        target="ws-9.corp.example",
        idempotency_key="k-isolate:undo",
        original_key="k-isolate",
    )
    state = connectors.state_of("edr", "ws-9.corp.example")
    assert first["after"]["isolated"] is True
    assert "isolated" not in state
    assert state["killed"] == [4242]


def test_a_nul_character_in_a_parameter_is_a_clear_400(api) -> None:
    body = {
        "action": "create_ticket",
        "target": "SOC-1",
        "params": {"title": "a\x00b"},
        "confidence": 0.7,
        "rationale": "x",
    }
    response = api.post(
        "/api/v1/proposals/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    assert "params.title" in response.json()["errors"]  # named down to the parameter
    assert not Proposal.objects.exists()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"title": 5}, {"params.title": "title must be a string of at most 200 characters, not 5"}),
        ({"title": "t" * 201}, {"params.title": "title must be a string of at most 200"}),
        ({"title": "ok", "colour": "red"}, {"params.colour": "unknown parameter 'colour'"}),
        ({"title": True, "x": 1}, {"params.title": "not a boolean", "params.x": "unknown"}),
        ([1], {"params": "Expected a dictionary of items"}),
    ],
)
def test_each_wrong_parameter_is_named_by_its_path(api, params, named) -> None:
    body = {
        "action": "create_ticket",
        "target": "SOC-1",
        "params": params,
        "confidence": 0.7,
        "rationale": "x",
    }
    response = api.post(
        "/api/v1/proposals/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == set(named)
    for path, words in named.items():
        assert words in errors[path][0], errors
    assert not Proposal.objects.exists()


def test_a_nul_character_in_a_reason_is_refused_clearly(agent_with_key, analyst) -> None:
    from soc_console.errors import InvalidInput

    proposal = factories.proposal(agent_with_key)
    with pytest.raises(InvalidInput, match="NUL"):
        services.proposal_reject(proposal_id=proposal.pk, analyst=analyst, reason="no\x00pe")
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"


def test_a_rollback_needs_a_reason_on_record(agent_with_key, analyst) -> None:
    from soc_console.errors import InvalidInput

    proposal = factories.proposal(
        agent_with_key, action="block_ip", target="198.18.0.5", confidence=0.95
    )
    execution = Execution.objects.get(proposal=proposal)
    services.execution_run(execution_id=execution.pk)
    with pytest.raises(InvalidInput, match="reason"):
        services.rollback_request(proposal_id=proposal.pk, analyst=analyst, reason="  ")
    services.rollback_request(proposal_id=proposal.pk, analyst=analyst, reason="false positive")
    event = AuditEvent.objects.get(
        proposal_id=proposal.pk, event_type="execution.rollback_requested"
    )
    assert event.data["reason"] == "false positive"


@pytest.mark.parametrize(("pid", "ok"), [(2**31 - 1, True), (2**31, False), (0, False)])
def test_a_process_id_is_a_positive_signed_32_bit_number(api, pid: int, ok: bool) -> None:
    body = {
        "action": "kill_process",
        "target": "ws-0142.corp.example",
        "params": {"pid": pid},
        "confidence": 0.6,
        "rationale": "x",
    }
    response = api.post(
        "/api/v1/proposals/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == (201 if ok else 400), response.json()
    if not ok:
        assert "params.pid" in response.json()["errors"]
