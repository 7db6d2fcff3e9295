"""Several cards decided at once: each proposal decided on its own, every rule checked per
proposal, and a summary of what was done and what was refused."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import Criticality
from approvals.models import Decision, Proposal
from approvals.services import proposals_decide_bulk
from audit.models import AuditEvent
from soc_console.errors import InvalidInput, NotPermitted
from tests import factories

pytestmark = pytest.mark.django_db


def _post(client: Client, ids: list[str], verdict: str, reason: str = "") -> tuple[str, dict]:
    response = client.post(
        "/proposals/decide/",
        {"proposals": ids, "verdict": verdict, "reason": reason},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    trigger = json.loads(response.headers["HX-Trigger"])["console:answered"]
    return response.content.decode(), trigger


def _three_and_a_critical(agent: factories.AgentWithKey) -> tuple[list[Proposal], Proposal]:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    plain = [factories.proposal(agent, target=f"ws-{n:04d}.corp.example") for n in range(3)]
    critical = factories.proposal(agent, target="dc01.corp.example")
    assert critical.required_approvals == 2
    return plain, critical


def test_bulk_approval_by_an_analyst_approves_the_rest_and_refuses_nothing_it_may_do(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    plain, critical = _three_and_a_critical(agent_with_key)
    html, answer = _post(
        signed_in(analyst), [str(p.id) for p in [*plain, critical]], "approve", "host owner ok"
    )
    # The critical asset's first approval is the analyst's to give: recorded, still pending.
    assert 'Approved <strong data-count="done">4</strong> of 4.' in html
    assert "1 of them still need another approval." in html
    assert sorted(answer["done"]) == sorted(str(p.id) for p in [*plain, critical])
    for proposal in plain:
        proposal.refresh_from_db()
        assert proposal.status == "approved"
        event = AuditEvent.objects.get(proposal_id=proposal.id, event_type="proposal.approved")
        assert event.actor == "alice" and event.data["reason"] == "host owner ok"
    critical.refresh_from_db()
    assert critical.status == "pending" and critical.approvals == 1
    assert AuditEvent.objects.filter(
        proposal_id=critical.id, event_type="proposal.approval_recorded"
    ).exists()


def test_bulk_approval_refuses_the_critical_card_that_needs_a_senior_with_its_reason(
    signed_in: Callable[[User], Client],
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    plain, critical = _three_and_a_critical(agent_with_key)
    _post(signed_in(analyst), [str(critical.id)], "approve")
    ids = [str(p.id) for p in [*plain, critical]]

    html, answer = _post(signed_in(analyst2), ids, "approve")

    assert answer["refused"] == [str(critical.id)] and len(answer["done"]) == 3
    assert 'Refused <strong data-count="refused">1</strong>' in html
    assert "the final approval must come from a senior analyst" in html
    assert 'data-code="senior_required"' in html
    critical.refresh_from_db()
    assert critical.status == "pending" and critical.approvals == 1
    assert Proposal.objects.filter(pk__in=[p.pk for p in plain], status="approved").count() == 3


def test_bulk_approval_refuses_what_this_analyst_already_approved_and_what_is_decided(
    analyst: User, analyst2: User, agent_with_key: factories.AgentWithKey
) -> None:
    plain, critical = _three_and_a_critical(agent_with_key)
    proposals_decide_bulk(
        proposal_ids=[str(critical.id), str(plain[0].id)], analyst=analyst, verdict="approve"
    )
    summary = proposals_decide_bulk(
        proposal_ids=[str(critical.id), str(plain[0].id), str(plain[1].id)],
        analyst=analyst,
        verdict="approve",
    )
    refused = {item.proposal_id: item for item in summary.refused}
    assert refused[str(critical.id)].code == "second_approver_required"
    assert refused[str(plain[0].id)].refusal == "Already approved by alice."
    assert [item.proposal_id for item in summary.done] == [str(plain[1].id)]
    assert "Refused 2:" in summary.as_text()


def test_bulk_rejection_without_a_reason_or_with_a_bad_id_changes_nothing(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    plain, _ = _three_and_a_critical(agent_with_key)
    ids = [str(p.id) for p in plain]
    html, answer = _post(signed_in(analyst), ids, "reject", " ")
    assert "A rejection needs a reason." in html and answer["field"] == "reason"
    html, _ = _post(signed_in(analyst), [*ids, "not-an-id"], "reject", "false positive")
    assert "is not a proposal id" in html
    with pytest.raises(InvalidInput):
        proposals_decide_bulk(proposal_ids=[], analyst=analyst, verdict="reject", reason="x y z")
    assert not Decision.objects.exists()
    assert Proposal.objects.filter(status="pending").count() == 4


def test_bulk_rejection_rejects_each_with_its_own_decision_and_event(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    plain, critical = _three_and_a_critical(agent_with_key)
    ids = [str(p.id) for p in [*plain, critical]]
    _, answer = _post(signed_in(analyst), ids, "reject", "storm from a misconfigured agent")
    assert sorted(answer["done"]) == sorted(ids)
    assert Decision.objects.filter(verdict="reject").count() == 4
    assert AuditEvent.objects.filter(event_type="proposal.rejected").count() == 4


def test_only_deciders_may_decide_in_bulk(
    signed_in: Callable[[User], Client], manager: User, agent_with_key: factories.AgentWithKey
) -> None:
    plain, _ = _three_and_a_critical(agent_with_key)
    response = signed_in(manager).post(
        "/proposals/decide/", {"proposals": [str(plain[0].id)], "verdict": "approve"}
    )
    assert response.status_code == 403
    with pytest.raises(NotPermitted):
        proposals_decide_bulk(proposal_ids=[str(plain[0].id)], analyst=manager, verdict="approve")
    assert not Decision.objects.exists()


def test_approvals_in_their_undo_window_get_their_toasts_after_a_bulk_decision_and_a_reload(
    signed_in: Callable[[User], Client],
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
    settings,
) -> None:
    # Reported: a bulk approval had no undo, and u said there was nothing to undo.
    settings.APPROVAL_UNDO_SECONDS = 30
    plain, critical = _three_and_a_critical(agent_with_key)
    alice = signed_in(analyst)
    html, _ = _post(alice, [str(p.id) for p in [*plain, critical]], "approve")

    for proposal in plain:
        assert f'id="undo-{proposal.id}" class="undo-toast"' in html
    # A first approval of two runs nothing: there is nothing to undo yet.
    assert f'id="undo-{critical.id}"' not in html

    # A page opened afterwards (a reload, another tab) offers the same undos, and only hers.
    page = alice.get("/").content.decode()
    tray = page.split('id="undo-tray"', 1)[1].split("</div>\n  <main", 1)[0]
    assert sorted(tray.count(f'id="undo-{p.id}"') for p in plain) == [1, 1, 1]
    assert (
        "undo-toast"
        not in signed_in(analyst2)
        .get("/")
        .content.decode()
        .split('id="undo-tray"', 1)[1]
        .split("<main", 1)[0]
    )

    # Undone from that page, the toast goes with the approval.
    undone = alice.post(f"/proposals/{plain[0].id}/undo/", HTTP_HX_REQUEST="true")
    assert "Approval undone" in undone.content.decode()
    assert f'id="undo-{plain[0].id}"' not in alice.get("/").content.decode()
