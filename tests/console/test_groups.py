"""One card per real decision: duplicate proposals (same action, same canonical target) shown
and decided as one group, each proposal still decided on its own, and the connector run once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals import live, selectors, services
from approvals.models import ConnectorCall, Execution, Proposal, ProposalStatus
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
    # One line per agent, its best case: the line says how many it stands for.
    assert '<span class="label">triage-bot</span> ×6, the most confident of them (' in page


def test_approve_all_is_off_only_when_every_agent_of_the_group_is_suspended(
    signed_in: Callable[[User], Client],
    analyst: User,
    senior: User,
    manager: User,
    agent_with_key: factories.AgentWithKey,
    second_agent: factories.AgentWithKey,
) -> None:
    _burst(agent_with_key, second_agent, n=4)

    def approve_all_button() -> str:
        page = signed_in(analyst).get("/").content.decode()
        return page.split('class="group-approve"', 1)[1].split(">", 1)[0]

    services.agent_suspend(agent=second_agent.agent, by=senior, reason="checking its model")
    assert "disabled" not in approve_all_button()  # triage-bot's proposals may still be approved
    services.agent_suspend(agent=agent_with_key.agent, by=senior, reason="and this one")
    assert "disabled" in approve_all_button()
    assert "Every agent of this group is suspended" in approve_all_button()
    services.agent_resume(agent=second_agent.agent, by=manager)
    assert "disabled" not in approve_all_button()


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


TARGETS = ("pair-a.corp.example", "pair-b.corp.example")


@pytest.fixture
def voices(db: None) -> list[factories.AgentWithKey]:
    limits = {"max_pending": 10_000, "max_proposals_per_minute": 10_000}
    grants = {"isolate_host": 2, "kill_process": 2}
    return [factories.agent(slug, grants=grants, **limits) for slug in ("voice-a", "voice-b")]


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1),  # the agent
            st.sampled_from([0, 0, 0, 1]),  # the target: mostly one, so that cases meet
            st.sampled_from(["isolate_host"] * 3 + ["kill_process"]),
            st.sampled_from([0.5] * 5 + [0.9]),  # equally confident is the common case
            st.sampled_from([[], [1], [1, 2], {"not": "a list"}]),  # evidence, by its length
            st.sampled_from([0.0] * 4 + [2.25]),  # priority: ties too
            st.booleans(),  # still pending
        ),
        min_size=2,
        max_size=12,
    ),
    order=st.randoms(use_true_random=False),
)
def test_a_groups_counts_best_cases_lead_and_order_are_the_queues_rules(
    voices: list[factories.AgentWithKey], rows: list[tuple], order: Any
) -> None:
    """Whatever the ties, each agent's best case is its most confident proposal, then the one
    with most evidence, then the queue's first; the pair's lead (whose parameters count) is the
    queue's first; agents are listed by confidence, then by where their first card stands."""
    Proposal.objects.filter(status=ProposalStatus.PENDING).update(status=ProposalStatus.EXPIRED)
    start = timezone.now() - timedelta(minutes=5)
    seconds = list(range(len(rows)))
    order.shuffle(seconds)  # distinct times, in an order unrelated to the rows'
    made = []
    for n, (who, on, action, confidence, evidence, priority, pending) in enumerate(rows):
        proposal = factories.proposal(voices[who], action=action, target=TARGETS[on], settle=False)
        changes = {
            "confidence": confidence,
            "evidence": [{"kind": "alert", "ref": f"SIEM-{e}"} for e in evidence]
            if isinstance(evidence, list)
            else evidence,
            "priority": priority,
            "created_at": start + timedelta(seconds=seconds[n]),
            "rationale": f"case {n}",
            "params": {"case": n},
            "status": ProposalStatus.PENDING if pending else ProposalStatus.REJECTED,
        }
        Proposal.objects.filter(pk=proposal.pk).update(**changes)
        made.append({"agent": voices[who].agent.slug, "pair": (action, TARGETS[on]), **changes})
    live.wait_idle()

    def queue_key(row: dict) -> tuple:
        return (-row["priority"], row["created_at"])

    def evidence_count(row: dict) -> int:
        return len(row["evidence"]) if isinstance(row["evidence"], list) else 0

    open_rows = [row for row in made if row["status"] == ProposalStatus.PENDING]
    found = selectors.open_on_targets(TARGETS)
    assert found.pairs() == {row["pair"] for row in open_rows}
    for pair in found.pairs():
        on_pair = [row for row in open_rows if row["pair"] == pair]
        lead = min(on_pair, key=queue_key)
        assert found.params(pair) == lead["params"]
        expected = []
        for slug in {row["agent"] for row in on_pair}:
            theirs = [row for row in on_pair if row["agent"] == slug]
            best = min(theirs, key=lambda r: (-r["confidence"], -evidence_count(r), *queue_key(r)))
            first = min(theirs, key=queue_key)
            rank = (-best["confidence"], -max(r["priority"] for r in theirs), first["created_at"])
            expected.append((rank, (slug, len(theirs), best["confidence"], best["rationale"])))
        members = found.members[pair]
        assert members.count == len(on_pair)
        assert [(v.slug, v.count, v.confidence, v.rationale) for v in members.voices] == [
            voice for _, voice in sorted(expected)
        ]
