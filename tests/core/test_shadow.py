"""Shadow policies: a candidate version judges every proposal beside the live one, which alone
decides; its score against what analysts decided; promotion and discarding."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import Policy, PolicyState
from agents.services import (
    PolicyError,
    policy_publish,
    policy_shadow_discard,
    policy_shadow_start,
)
from approvals import services, tasks
from approvals.models import Execution, Proposal
from approvals.selectors.shadow import (
    AGREEMENT,
    EXTRA_LOAD,
    HARM_AVOIDED,
    OTHER,
    SAME,
    UNSETTLED,
    WOULD_BLOCK,
    Proportion,
    category,
    shadow_score,
    wilson,
)
from audit.models import AuditEvent
from soc_console.errors import WrongState
from tests import factories

# Live: block_ip and kill_process need an analyst, isolate_host runs alone at 0.9.
LIVE = {"block_ip": 2, "isolate_host": 3, "kill_process": 2}
# The candidate: block_ip alone from 0.8, isolate_host back to an analyst, kill_process never.
SHADOW = {"block_ip": 3, "isolate_host": 2, "kill_process": 0}


@pytest.fixture
def bot(db: None) -> factories.AgentWithKey:
    return factories.agent("shadow-bot", grants=LIVE, auto_threshold=0.9)


@pytest.fixture
def shadow(bot: factories.AgentWithKey) -> Policy:
    return policy_shadow_start(agent=bot.agent, grants=SHADOW, auto_threshold=0.8, by="maya")


def _ip(n: int) -> str:
    return f"203.0.113.{n}"


def _approve(p: Proposal, analyst: User, seconds: float) -> None:
    services.proposal_approve(
        proposal_id=p.id, analyst=analyst, reason="confirmed", seconds_on_card=seconds
    )


def _reject(p: Proposal, analyst: User, seconds: float) -> None:
    services.proposal_reject(
        proposal_id=p.id, analyst=analyst, reason="benign scanner", seconds_on_card=seconds
    )


def test_wilson_interval_matches_published_values() -> None:
    low, high = wilson(2, 10)
    assert (round(low, 4), round(high, 4)) == (0.0567, 0.5098)
    low, high = wilson(0, 20)
    assert (round(low, 4), round(high, 4)) == (0.0, 0.1611)
    assert wilson(0, 0) is None
    assert str(Proportion(2, 6)) == "2 of 6 (33.3 %, 95 % CI 9.7–70.0 %)"


@pytest.mark.parametrize(
    ("shadow_outcome", "status", "execution_status", "expected"),
    [
        ("auto_approved", "approved", "succeeded", AGREEMENT),
        ("auto_approved", "approved", "rolled_back", HARM_AVOIDED),
        ("auto_approved", "approved", "rolling_back", HARM_AVOIDED),
        ("auto_approved", "rejected", None, HARM_AVOIDED),
        ("auto_approved", "pending", None, UNSETTLED),
        ("auto_approved", "expired", None, UNSETTLED),
        ("pending", "auto_approved", "succeeded", EXTRA_LOAD),
        ("pending", "blocked", None, EXTRA_LOAD),
        ("blocked", "approved", "succeeded", WOULD_BLOCK),
        ("blocked", "pending", None, WOULD_BLOCK),
        ("flagged", "approved", "succeeded", OTHER),
        ("pending", "rejected", None, SAME),
        ("auto_approved", "auto_approved", "rolled_back", SAME),
    ],
)
def test_each_judged_proposal_falls_in_one_category(
    shadow_outcome: str, status: str, execution_status: str | None, expected: str
) -> None:
    assert (
        category(shadow_outcome=shadow_outcome, status=status, execution_status=execution_status)
        == expected
    )


def test_hand_built_history_gives_known_scores_intervals_and_minutes(
    bot: factories.AgentWithKey, shadow: Policy, analyst: User, analyst2: User
) -> None:
    # Six block_ip at 0.85: an analyst under the live policy, run at once under the shadow.
    would_run = [
        factories.proposal(bot, action="block_ip", target=_ip(n), confidence=0.85)
        for n in range(1, 7)
    ]
    for p in would_run[:4]:
        _approve(p, analyst, 30)
    _reject(would_run[4], analyst, 60)
    _approve(would_run[5], analyst, 10)
    execution = Execution.objects.get(proposal=would_run[5])
    tasks.run_execution(str(execution.id))
    services.rollback_request(execution_id=execution.id, analyst=analyst2, reason="false positive")
    assert tasks.run_rollback(str(execution.id)) == "rolled_back"
    # Two isolate_host at 0.95 ran alone; the shadow would have asked an analyst.
    for host in ("ws-0101.corp.example", "ws-0102.corp.example"):
        ran = factories.proposal(bot, action="isolate_host", target=host, confidence=0.95)
        assert ran.status == "auto_approved"
    # kill_process: the shadow would have blocked it; still pending under the live policy.
    killed = factories.proposal(
        bot, action="kill_process", target="ws-0103.corp.example", confidence=0.9
    )
    # One still waiting for a verdict the score depends on, one routed alike (and decided).
    factories.proposal(bot, action="block_ip", target=_ip(50), confidence=0.85)
    alike = factories.proposal(bot, action="block_ip", target=_ip(51), confidence=0.6)
    _approve(alike, analyst2, 20)

    score = shadow_score(shadow)
    t = score.overall
    assert t.judged == 11
    assert t.settled == 10
    assert t.counts[UNSETTLED] == 1 and t.counts[SAME] == 1
    assert (t.agreement.count, t.agreement.of) == (4, 6)
    assert (t.harm_avoided.count, t.harm_avoided.of) == (2, 6)
    assert [round(x, 4) for x in t.harm_avoided.interval] == [0.0968, 0.7000]
    assert (t.extra_load.count, t.extra_load.of) == (2, 10)
    assert [round(x, 4) for x in t.extra_load.interval] == [0.0567, 0.5098]
    assert (t.would_block.count, t.would_block.of) == (1, 10)
    assert [round(x, 4) for x in t.would_block.interval] == [0.0179, 0.4042]
    # Saved: the measured time on the six cards it would have run (4×30 + 60 + 10 s).
    # Extra: two cards at the median measured time on card, 30 s (10, 20, 30, 30, 30, 30, 60).
    assert t.saved_seconds == 190 and t.saved_cards == 6
    assert t.median_card_seconds == 30 and t.extra_seconds == 60
    assert t.net_minutes == pytest.approx((60 - 190) / 60)
    assert t.minutes_text().startswith("2.2 analyst minutes saved")
    # Worst first: the rolled-back approval, then the rejection, then what it would block.
    assert [p.id for _, p in score.worst] == [would_run[5].id, would_run[4].id, killed.id]
    assert score.by_action["block_ip"].harm_avoided.count == 2
    assert score.by_action["isolate_host"].counts[EXTRA_LOAD] == 2


def test_live_policy_alone_decides_and_the_shadow_is_recorded_beside_it(
    bot: factories.AgentWithKey, shadow: Policy
) -> None:
    proposal = factories.proposal(bot, action="block_ip", target=_ip(9), confidence=0.85)
    assert proposal.status == "pending"  # the live policy's outcome
    assert not Execution.objects.filter(proposal=proposal).exists()
    stored = Proposal.objects.get(pk=proposal.pk)
    assert (stored.shadow_version, stored.shadow_outcome) == (shadow.version, "auto_approved")
    event = AuditEvent.objects.get(event_type="proposal.submitted", proposal_id=proposal.id)
    assert event.data["policy_version"] == 1
    assert event.data["shadow"]["version"] == shadow.version
    assert event.data["shadow"]["outcome"] == "auto_approved"


def test_agents_see_the_shadow_version_but_never_its_outcome(
    bot: factories.AgentWithKey, shadow: Policy
) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.raw_key}")
    me = api.get("/api/v1/agent/").json()
    assert me["shadow_version"] == shadow.version
    assert me["policy"]["version"] == 1
    assert me["policy"]["grants"] == LIVE
    created = api.post(
        "/api/v1/proposals/",
        {
            "action": "block_ip",
            "target": _ip(77),
            "confidence": 0.85,
            "rationale": "Port scan from a listed source.",
            "evidence": [{"kind": "alert", "ref": "SIEM-1"}],
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="shadow-1",
    )
    assert created.status_code == 201
    body = created.json()
    assert body["routing"]["policy_version"] == 1
    assert body["routing"]["shadow_version"] == shadow.version
    assert body["routing"]["outcome"] == "pending"
    assert "auto_approved" not in created.content.decode()
    assert "shadow_outcome" not in created.content.decode()


def test_routing_the_shadow_costs_the_intake_at_most_one_query(
    bot: factories.AgentWithKey,
) -> None:
    def queries(n: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            factories.proposal(bot, action="block_ip", target=_ip(n), confidence=0.85)
        return len(captured)

    queries(100)  # the live version is read once and cached
    without = queries(101)
    policy_shadow_start(agent=bot.agent, grants=SHADOW, auto_threshold=0.8, by="maya")
    queries(102)  # the shadow version is read once and cached
    with_shadow = queries(103)
    assert with_shadow - without <= 1


def test_one_shadow_at_a_time_and_discarding_leaves_the_live_policy(
    bot: factories.AgentWithKey, shadow: Policy
) -> None:
    with pytest.raises(WrongState):
        policy_shadow_start(agent=bot.agent, grants={"block_ip": 4}, by="maya")
    policy_shadow_discard(agent=bot.agent, version=shadow.version, by="maya", reason="too bold")
    assert Policy.objects.get(pk=shadow.pk).state == PolicyState.DISCARDED
    assert bot.agent.current_policy.version == 1
    event = AuditEvent.objects.filter(event_type="policy.shadow_discarded").get()
    assert event.data == {
        "agent": "shadow-bot",
        "shadow_version": shadow.version,
        "reason": "too bold",
    }
    later = factories.proposal(bot, action="block_ip", target=_ip(3), confidence=0.85)
    assert Proposal.objects.get(pk=later.pk).shadow_version is None
    with pytest.raises(WrongState):
        policy_shadow_discard(agent=bot.agent, version=shadow.version, by="maya")


def test_a_bad_candidate_is_refused_and_nothing_changes(bot: factories.AgentWithKey) -> None:
    with pytest.raises(PolicyError):
        policy_shadow_start(agent=bot.agent, auto_threshold=0.4, review_threshold=0.6, by="m")
    assert bot.agent.policies.count() == 1
    assert not AuditEvent.objects.filter(event_type="policy.shadow_started").exists()


def test_promotion_needs_the_minimum_sample(
    bot: factories.AgentWithKey, shadow: Policy, settings
) -> None:
    settings.SHADOW_MIN_SAMPLE = 2
    factories.proposal(bot, action="kill_process", target="ws-0201.corp.example", confidence=0.9)
    with pytest.raises(WrongState) as refused:
        services.shadow_promote(agent=bot.agent, version=shadow.version, by="maya")
    assert refused.value.code == "sample_too_small"
    assert Policy.objects.get(pk=shadow.pk).state == PolicyState.SHADOW


def test_promotion_publishes_a_new_live_version_above_any_published_meanwhile(
    bot: factories.AgentWithKey, shadow: Policy, analyst: User, settings
) -> None:
    settings.SHADOW_MIN_SAMPLE = 2
    for n in (1, 2):
        _approve(
            factories.proposal(bot, action="block_ip", target=_ip(n), confidence=0.85), analyst, 12
        )
    # A live version published while the shadow runs (as a demotion would).
    meanwhile = policy_publish(agent=bot.agent, grants={"isolate_host": 2}, by="system")
    assert meanwhile.version == shadow.version + 1
    assert bot.agent.current_policy.version == meanwhile.version

    live = services.shadow_promote(agent=bot.agent, version=shadow.version, by="maya")

    assert live.version == meanwhile.version + 1
    assert live.state == PolicyState.LIVE
    assert {g.action: g.level for g in live.grants.all()} == SHADOW
    assert live.auto_threshold == 0.8
    assert Policy.objects.get(pk=shadow.pk).state == PolicyState.PROMOTED
    assert bot.agent.current_policy.pk == live.pk
    event = AuditEvent.objects.get(event_type="policy.promoted")
    assert event.actor == "maya"
    assert event.data["shadow_version"] == shadow.version
    assert event.data["replaced_version"] == meanwhile.version
    assert event.data["version"] == live.version
    assert event.data["evidence"]["agreement"] == {
        "count": 2,
        "of": 2,
        "wilson95": [round(wilson(2, 2)[0], 4), 1.0],
    }
    # The next proposal is routed by the promoted content, and no shadow judges it.
    nxt = factories.proposal(bot, action="block_ip", target=_ip(8), confidence=0.85)
    assert nxt.status == "auto_approved"
    assert nxt.policy_version == live.version
    assert Proposal.objects.get(pk=nxt.pk).shadow_version is None
    with pytest.raises(WrongState):
        services.shadow_promote(agent=bot.agent, version=shadow.version, by="maya")
