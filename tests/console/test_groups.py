"""One card per real decision: duplicate proposals (same action, same canonical target) shown
and decided as one group, each proposal still decided on its own, and the connector run once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from approvals import live, selectors, services
from approvals.models import ConnectorCall, Execution, Proposal
from audit.models import AuditEvent
from soc_console.errors import WrongState
from tests import factories

pytestmark = pytest.mark.django_db

HOST = "web-prod03.corp.example"


def _burst(
    first: factories.AgentWithKey, second: factories.AgentWithKey, n: int = 9
) -> list[Proposal]:
    """n requests to isolate the same host, in two spellings, from two agents."""
    made = []
    for i in range(n):
        owner = first if i % 3 else second
        target = HOST if i % 2 else HOST.upper() + "."
        made.append(
            factories.proposal(
                owner,
                target=target,
                confidence=0.5 + i / 100,
                rationale=f"Beacon number {i}",
                evidence=[{"kind": "alert", "ref": f"SIEM-{i}"}],
            )
        )
    return made


@pytest.fixture
def second_agent(db: None) -> factories.AgentWithKey:
    return factories.agent("edr-bot", grants={"isolate_host": 2, "kill_process": 2})


def test_duplicates_form_one_group_with_each_agents_best_case(
    signed_in: Callable[[User], Client],
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    second_agent: factories.AgentWithKey,
) -> None:
    burst = _burst(agent_with_key, second_agent)
    other = factories.proposal(second_agent, action="kill_process", target=HOST)
    alone = factories.proposal(agent_with_key, target="ws-0001.corp.example")

    cards = live.in_context(selectors.pending_queue())
    group = next(c.group for c in cards if c.id == burst[0].id)
    assert group is not None and group.count == 9
    # Its form names the group and when it was read, not its nine proposals.
    assert selectors.group_of_token(group.token)[:2] == ("isolate_host", HOST)
    voices = {v.slug: v for v in group.agents}
    assert voices["triage-bot"].count == 6 and voices["edr-bot"].count == 3
    # Each agent's best case: its most confident proposal's rationale and evidence.
    assert voices["triage-bot"].rationale == "Beacon number 8"
    assert voices["edr-bot"].evidence == [{"kind": "alert", "ref": "SIEM-6"}]
    lone = next(c for c in cards if c.id == alone.id)
    assert lone.group is None and lone.others == ()
    # The kill on the same host is another open proposal on this target, not a duplicate.
    assert next(c for c in cards if c.id == burst[0].id).others == (("Kill process", 1),)
    assert next(c for c in cards if c.id == other.id).others == (("Isolate host", 9),)

    page = signed_in(analyst).get("/").content.decode()
    assert page.count(f'data-group="isolate_host {HOST}"') == 9
    assert "<strong>9 proposals</strong> for this same action and target" in page
    assert "Approve all 9" in page and "Also open on this target: Kill process." in page


def test_approving_the_group_decides_each_and_the_connector_runs_once(
    signed_in: Callable[[User], Client],
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    second_agent: factories.AgentWithKey,
) -> None:
    burst = _burst(agent_with_key, second_agent)
    response = signed_in(analyst).post(
        "/proposals/decide/",
        {"proposals": [str(p.id) for p in burst], "verdict": "approve", "reason": "one host"},
        HTTP_HX_REQUEST="true",
    )
    assert 'Approved <strong data-count="done">9</strong> of 9.' in response.content.decode()
    assert AuditEvent.objects.filter(event_type="proposal.approved").count() == 9
    executions = list(Execution.objects.filter(proposal__in=burst).order_by("created_at"))
    assert len(executions) == 9

    for execution in executions:
        services.execution_run(execution_id=execution.pk)

    assert ConnectorCall.objects.filter(operation="isolate_host").count() == 1
    results = [e.result for e in Execution.objects.filter(proposal__in=burst)]
    assert all(e.status == "succeeded" for e in Execution.objects.filter(proposal__in=burst))
    already = [r for r in results if r.get("already_in_place")]
    assert len(already) == 8
    first = ConnectorCall.objects.get(operation="isolate_host")
    assert {r["by_call"] for r in already} == {first.idempotency_key}


def test_a_card_says_when_its_effect_is_already_in_place_and_by_whom(
    signed_in: Callable[[User], Client],
    analyst: User,
    agent_with_key: factories.AgentWithKey,
    second_agent: factories.AgentWithKey,
) -> None:
    done = factories.proposal(agent_with_key, target=HOST)
    services.proposal_approve(proposal_id=done.id, analyst=analyst)
    services.execution_run(execution_id=Execution.objects.get(proposal=done).pk)
    late = factories.proposal(second_agent, target=HOST.upper())
    kill = factories.proposal(second_agent, action="kill_process", target=HOST)

    page = signed_in(analyst).get("/").content.decode()
    card = page[page.index(f'id="card-{late.id}"') :]
    card = card[: card.index("</article>")]
    assert "Already in place: Isolate host on <code>web-prod03.corp.example</code> since" in card
    assert f'<a href="/proposals/{done.id}/">triage-bot\'s proposal</a>, approved by alice' in card
    # Another action on the same host: the host's state, not "already in place".
    kill_card = page[page.index(f'id="card-{kill.id}"') :]
    kill_card = kill_card[: kill_card.index("</article>")]
    assert "edr now: isolated" in kill_card and "Already in place" not in kill_card

    services.proposal_approve(proposal_id=late.id, analyst=analyst)
    execution = services.execution_run(execution_id=Execution.objects.get(proposal=late).pk)
    assert execution is not None and execution.result["already_in_place"] is True
    assert ConnectorCall.objects.filter(operation="isolate_host").count() == 1
    detail = signed_in(analyst).get(f"/proposals/{late.id}/").content.decode()
    assert "so the connector was not called again and nothing changed" in detail
    assert "Roll back (" not in detail  # nothing of its own to undo
    with pytest.raises(WrongState, match="Nothing to roll back"):
        services.rollback_request(analyst=analyst, proposal_id=late.id, reason="wrong host")


def test_a_group_decision_refuses_what_is_no_longer_pending_and_decides_the_rest(
    analyst: User,
    analyst2: User,
    agent_with_key: factories.AgentWithKey,
    second_agent: factories.AgentWithKey,
) -> None:
    burst = _burst(agent_with_key, second_agent, n=3)
    services.proposal_reject(proposal_id=burst[0].id, analyst=analyst2, reason="dup of INC-9")
    summary = services.proposals_decide_bulk(
        proposal_ids=[str(p.id) for p in burst], analyst=analyst, verdict="approve"
    )
    assert [item.refusal for item in summary.refused] == ["Already rejected by bob."]
    assert len(summary.done) == 2
    groups = selectors.duplicate_groups([("isolate_host", HOST)])
    assert groups == {}  # nothing pending is left to group
