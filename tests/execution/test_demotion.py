"""Automatic demotion: each rule on a hand-built history, its boundaries, what a demotion
publishes, holds and tells, and the claim that lets no automatic execution of a demoted grant
start."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail

from agents import demotion as rules
from agents.models import Agent, Policy
from agents.services import policy_publish
from approvals import services, tasks
from approvals.models import Execution, ExecutionStatus, Proposal, ProposalStatus
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

_addresses = itertools.count(1)

# Targets the simulated firewall answers for: an address outside the inventory runs, one in
# 198.51.100.128/25 fails permanently (README, connectors).
GOOD = "203.0.113.{}"
BROKEN = "198.51.100.{}"


@pytest.fixture
def bot(db: None) -> factories.AgentWithKey:
    """block_ip at level 3 (it runs at once at 0.9 and above), budgets out of the way."""
    return factories.agent(
        "edr-bot",
        grants={"block_ip": 3, "isolate_host": 2},
        budgets={"block_ip": (10**6, 10**6)},
    )


def with_rules(owner: factories.AgentWithKey, **given: Any) -> Policy:
    return policy_publish(agent=owner.agent, demotions={"block_ip": given}, by="tests")


def automatic(owner: factories.AgentWithKey, *, broken: bool = False) -> Proposal:
    n = next(_addresses)
    target = BROKEN.format(128 + n % 120) if broken else GOOD.format(n % 200 + 1)
    proposal = factories.proposal(owner, action="block_ip", target=target, confidence=0.97)
    assert proposal.status == ProposalStatus.AUTO_APPROVED, proposal.routing_explanation
    return proposal


def run(proposal: Proposal) -> str:
    tasks.run_execution(str(proposal.execution.id))
    return Execution.objects.get(proposal=proposal).status


def history(owner: factories.AgentWithKey, outcomes: str) -> list[Proposal]:
    """Run one automatic block_ip per letter, oldest first: s succeeds, f fails."""
    done = []
    for letter in outcomes:
        proposal = automatic(owner, broken=letter == "f")
        expected = ExecutionStatus.FAILED if letter == "f" else ExecutionStatus.SUCCEEDED
        assert run(proposal) == expected
        done.append(proposal)
    return done


def level(owner: factories.AgentWithKey) -> int:
    return Agent.objects.get(pk=owner.agent.pk).current_policy.level_for("block_ip")


def demotions() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="grant.demoted").order_by("seq"))


# --- the failure-rate rule's arithmetic -------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "seen", "fired"),
    [
        (5, 20, False),  # exactly 25 %: the rule says more than
        (6, 20, True),
        (19, 19, False),  # fewer executions than the window: too few to judge
        (0, 20, False),
        (20, 20, True),
    ],
)
def test_failure_rate_fires_only_above_the_share_of_a_full_window(
    bad: int, seen: int, fired: bool
) -> None:
    assert rules.failure_rate_exceeded(bad=bad, seen=seen, rules=rules.DEFAULT_RULES) is fired


def test_a_window_of_zero_turns_the_failure_rate_rule_off() -> None:
    off = rules.DemotionRules(failure_window=0)
    assert not rules.failure_rate_exceeded(bad=5, seen=5, rules=off)


def test_defaults_demote_to_level_two_on_each_rule(bot: factories.AgentWithKey) -> None:
    grant = bot.agent.current_policy.grants.get(action="block_ip")
    assert rules.rules_of(grant) == rules.DemotionRules(
        to_level=2,
        failure_window=20,
        failure_percent=25,
        over_confidence=True,
        automatic_rollback=True,
    )


# --- failure rate on a hand-built history -----------------------------------------------------


def test_failure_rate_at_exactly_the_share_does_not_demote(bot: factories.AgentWithKey) -> None:
    with_rules(bot, failure_window=4, failure_percent=25)
    history(bot, "ssfs")  # 1 of 4: exactly 25 %
    assert level(bot) == 3
    assert demotions() == []


def test_failure_rate_with_fewer_executions_than_the_window_does_not_demote(
    bot: factories.AgentWithKey,
) -> None:
    with_rules(bot, failure_window=4, failure_percent=25)
    history(bot, "ff")  # all failed, but only 2 of the 4 needed
    history(bot, "s")
    assert level(bot) == 3
    assert demotions() == []


def test_failure_rate_above_the_share_demotes_with_its_evidence(
    bot: factories.AgentWithKey, manager: User, django_capture_on_commit_callbacks: Any
) -> None:
    with_rules(bot, failure_window=4, failure_percent=25)
    done = history(bot, "ssfs")
    assert level(bot) == 3
    with django_capture_on_commit_callbacks(execute=True):
        last = history(bot, "f")[0]  # the last 4: s f s f, 50 %
    assert level(bot) == 2

    [event] = demotions()
    window = [str(p.execution.id) for p in reversed([*done[1:], last])]
    assert event.actor == "system"
    assert event.data == {
        "agent": "edr-bot",
        "action": "block_ip",
        "from_level": 3,
        "to_level": 2,
        "rule": "failure_rate",
        "evidence": {
            "execution": str(last.execution.id),
            "proposal": str(last.id),
            "outcome": "failed",
            "window": 4,
            "threshold_percent": 25,
            "executions": window,
            "bad_executions": [str(last.execution.id), str(done[2].execution.id)],
            "bad": 2,
            "automatic_bad": 2,
        },
        "policy_version": 3,
        "previous_version": 2,
        "held_executions": [],
    }
    # The new version keeps everything else, the rules included; it was published by the system.
    published = AuditEvent.objects.filter(event_type="policy.published").order_by("-seq").first()
    assert (published.actor, published.actor_type) == ("system", "system")
    assert published.data["grants"] == {"block_ip": 2, "isolate_host": 2}
    grant = Agent.objects.get(pk=bot.agent.pk).current_policy.grants.get(action="block_ip")
    assert (grant.demote_failure_window, grant.max_auto_per_hour) == (4, 10**6)
    # The event follows the failure that fired it, in the same transaction.
    failed = AuditEvent.objects.get(event_type="execution.failed", proposal_id=last.id)
    assert event.seq > failed.seq
    # The managers hear of it once, with the evidence and the agent's readiness page.
    [message] = [m for m in mail.outbox if "demoted" in m.subject]
    assert message.to == [manager.email]
    assert message.subject == "[SOC] edr-bot demoted on block_ip: level 3 → 2"
    assert f"/audit/events/{event.seq}/" in message.body
    assert "/agents/edr-bot/" in message.body
    assert "never automatic" in message.body
    # The next confident proposal waits for an analyst.
    after = factories.proposal(bot, action="block_ip", target="203.0.113.251", confidence=0.99)
    assert after.status == ProposalStatus.PENDING


def test_a_rollback_counts_against_the_failure_rate(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    with_rules(bot, failure_window=2, failure_percent=25, automatic_rollback=False)
    first, second = history(bot, "ss")
    services.rollback_request(
        execution_id=second.execution.id, analyst=analyst, reason="false positive"
    )
    [event] = demotions()
    assert event.data["rule"] == "failure_rate"
    assert event.data["evidence"]["outcome"] == "rolling_back"
    assert event.data["evidence"]["bad"] == 1


def test_the_failure_rate_rule_off_never_demotes(bot: factories.AgentWithKey) -> None:
    with_rules(bot, failure_window=0)
    history(bot, "ffff")
    assert level(bot) == 3


# --- over-confidence --------------------------------------------------------------------------


@pytest.fixture
def critical_ip(db: None) -> str:
    # Level 3 never runs on a critical asset: a confident proposal on it waits for analysts.
    factories.asset("203.0.113.250", kind="ip", criticality="critical")
    return "203.0.113.250"


def waiting(owner: factories.AgentWithKey, target: str, confidence: float) -> Proposal:
    proposal = factories.proposal(owner, action="block_ip", target=target, confidence=confidence)
    assert proposal.status == ProposalStatus.PENDING
    return proposal


def test_rejecting_a_proposal_at_the_auto_threshold_demotes(
    bot: factories.AgentWithKey, analyst: User, critical_ip: str
) -> None:
    proposal = waiting(bot, critical_ip, 0.9)  # exactly the auto threshold: at or above
    services.proposal_reject(proposal_id=proposal.id, analyst=analyst, reason="a known scanner")
    assert level(bot) == 2
    [event] = demotions()
    assert event.data["rule"] == "over_confidence"
    assert event.proposal_id == proposal.id
    assert event.data["evidence"] == {
        "proposal": str(proposal.id),
        "confidence": 0.9,
        "auto_threshold": 0.9,
        "routed_under_version": 1,
        "analyst": "alice",
        "reason": "a known scanner",
    }
    rejected = AuditEvent.objects.get(event_type="proposal.rejected", proposal_id=proposal.id)
    assert rejected.seq < event.seq


def test_rejecting_a_proposal_below_the_auto_threshold_does_not_demote(
    bot: factories.AgentWithKey, analyst: User, critical_ip: str
) -> None:
    proposal = waiting(bot, critical_ip, 0.89)
    services.proposal_reject(proposal_id=proposal.id, analyst=analyst, reason="a known scanner")
    assert level(bot) == 3
    assert demotions() == []


def test_clearing_a_suspended_agents_queue_rejects_without_demoting(
    bot: factories.AgentWithKey, senior: User, manager: User, critical_ip: str
) -> None:
    # A breaker's flood cleared in one action: nobody judged the proposals one by one.
    flood = [waiting(bot, critical_ip, 0.95) for _ in range(3)]
    services.agent_suspend(agent=bot.agent, by=senior, reason="flooding the queue")
    report = services.agent_pending_clear(agent=bot.agent, by=senior, reason="broken model")
    assert report.cleared == 3
    assert {p.status for p in Proposal.objects.filter(pk__in=[p.pk for p in flood])} == {
        ProposalStatus.WITHDRAWN
    }
    assert level(bot) == 3
    assert demotions() == []
    assert not AuditEvent.objects.filter(event_type="proposal.rejected").exists()
    # The same rejection of one card, judged on its own, still demotes.
    services.agent_resume(agent=bot.agent, by=manager)
    judged = waiting(bot, critical_ip, 0.95)
    services.proposal_reject(proposal_id=judged.id, analyst=senior, reason="a known scanner")
    assert level(bot) == 2


def test_over_confidence_rule_off_does_not_demote(
    bot: factories.AgentWithKey, analyst: User, critical_ip: str
) -> None:
    with_rules(bot, over_confidence=False)
    proposal = waiting(bot, critical_ip, 0.95)
    services.proposal_reject(proposal_id=proposal.id, analyst=analyst, reason="a known scanner")
    assert level(bot) == 3


def test_a_grant_at_or_below_its_demotion_level_is_never_changed(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    # isolate_host is at level 2 already; and a rule set to level 4 never raises a grant.
    policy_publish(agent=bot.agent, demotions={"isolate_host": {"to_level": 4}}, by="tests")
    proposal = factories.proposal(bot, action="isolate_host", confidence=0.99)
    services.proposal_reject(proposal_id=proposal.id, analyst=analyst, reason="lab machine")
    policy = Agent.objects.get(pk=bot.agent.pk).current_policy
    assert policy.version == 2
    assert policy.level_for("isolate_host") == 2
    assert demotions() == []


# --- the rollback of an automatic action ------------------------------------------------------


def test_rolling_back_an_automatic_action_demotes_to_level_two(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    [proposal] = history(bot, "s")
    services.rollback_request(
        execution_id=proposal.execution.id, analyst=analyst, reason="false positive"
    )
    assert level(bot) == 2
    [event] = demotions()
    assert event.data["rule"] == "automatic_rollback"
    assert event.data["evidence"] == {
        "execution": str(proposal.execution.id),
        "proposal": str(proposal.id),
        "analyst": "alice",
        "reason": "false positive",
        "approved_under_version": 1,
    }
    assert (event.data["policy_version"], event.data["previous_version"]) == (2, 1)


def test_rolling_back_an_analysts_approval_is_not_an_automatic_rollback(
    bot: factories.AgentWithKey, analyst: User, analyst2: User, senior: User, critical_ip: str
) -> None:
    proposal = waiting(bot, critical_ip, 0.5)
    services.proposal_approve(proposal_id=proposal.id, analyst=analyst, reason="ok")
    services.proposal_approve(proposal_id=proposal.id, analyst=senior, reason="ok")
    execution = Execution.objects.get(proposal=proposal)
    Execution.objects.filter(pk=execution.pk).update(not_before=None)  # past its undo window
    tasks.run_execution(str(execution.id))
    services.rollback_request(execution_id=execution.id, analyst=analyst2, reason="false positive")
    assert level(bot) == 3  # one bad execution of one: fewer than the window of 20
    assert demotions() == []


def test_automatic_rollback_rule_off_does_not_demote(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    with_rules(bot, automatic_rollback=False)
    [proposal] = history(bot, "s")
    services.rollback_request(
        execution_id=proposal.execution.id, analyst=analyst, reason="false positive"
    )
    assert level(bot) == 3


def test_two_firings_demote_once(bot: factories.AgentWithKey, analyst: User) -> None:
    first, second = history(bot, "ss")
    services.rollback_request(
        execution_id=first.execution.id, analyst=analyst, reason="false positive"
    )
    services.rollback_request(
        execution_id=second.execution.id, analyst=analyst, reason="false positive"
    )
    assert len(demotions()) == 1
    assert Agent.objects.get(pk=bot.agent.pk).current_policy.version == 2


# --- what may still start ---------------------------------------------------------------------


def test_a_demotion_holds_the_grants_queued_automatic_executions(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    [ran] = history(bot, "s")
    queued = [automatic(bot) for _ in range(3)]
    waiting_for_analyst = factories.proposal(bot, action="isolate_host", confidence=0.99)
    services.proposal_approve(proposal_id=waiting_for_analyst.id, analyst=analyst, reason="ok")

    services.rollback_request(
        execution_id=ran.execution.id, analyst=analyst, reason="false positive"
    )

    held = {str(p.execution.id) for p in queued}
    [event] = demotions()
    assert set(event.data["held_executions"]) == held
    for proposal in queued:
        execution = Execution.objects.get(proposal=proposal)
        assert execution.status == ExecutionStatus.HELD
        assert tasks.run_execution(str(execution.id)) is None  # a message on its way: nothing
        held_event = AuditEvent.objects.get(event_type="execution.held", proposal_id=proposal.id)
        assert held_event.data["why"] == "grant demoted"
        assert held_event.seq < demotions()[0].seq
    # Another grant, and an analyst's approval, are not the demoted grant's autonomy.
    other = Execution.objects.get(proposal=waiting_for_analyst)
    assert other.status == ExecutionStatus.QUEUED


def test_the_claim_holds_an_automatic_execution_whose_grant_was_lowered_since(
    bot: factories.AgentWithKey, analyst: User
) -> None:
    # Approved automatically under v1; then a version that no longer runs it at once commits
    # (as when a submission that read v1 commits after a demotion).
    proposal = automatic(bot)
    policy_publish(agent=bot.agent, grants={"block_ip": 2}, by="tests")

    assert services.execution_claim(execution_id=proposal.execution.id) is None
    execution = Execution.objects.get(proposal=proposal)
    assert execution.status == ExecutionStatus.HELD
    assert execution.attempts == 0
    assert AuditEvent.objects.get(event_type="execution.held").data["why"] == "grant demoted"

    # An analyst's re-confirmation is the confirmation the demotion asks for: it runs, once.
    services.execution_reconfirm_held(execution_id=execution.id, analyst=analyst)
    proposal.refresh_from_db()
    assert proposal.reviewed_by == analyst
    assert run(proposal) == ExecutionStatus.SUCCEEDED


def test_the_claim_runs_an_automatic_execution_the_live_policy_still_runs_at_once(
    bot: factories.AgentWithKey,
) -> None:
    proposal = automatic(bot)
    # Another version, the grant unchanged (or raised): nothing to hold.
    policy_publish(agent=bot.agent, grants={"block_ip": 4}, by="tests")
    assert run(proposal) == ExecutionStatus.SUCCEEDED
