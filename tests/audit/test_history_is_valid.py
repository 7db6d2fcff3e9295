from __future__ import annotations

import io
import random

import pytest
from django.core.management import call_command

from agents import catalogue
from agents.models import Agent
from approvals import demo
from approvals.demo.history import seed_history
from approvals.models import Proposal
from approvals.selectors.shadow import shadow_score
from audit.models import AuditEvent
from audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def test_seeded_history_only_holds_proposals_the_api_would_have_accepted() -> None:
    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    created = seed_history(weeks=1, rng=random.Random(5))
    assert created > 50
    rows = Proposal.objects.values_list("action", "target", "target_canonical")
    for action, target, canonical in rows:
        kind = catalogue.get(action)
        assert kind is not None
        try:
            identity = kind.clean_target(target)
        except catalogue.TargetError as exc:
            pytest.fail(f"{action} {target}: {exc}")
        assert canonical == identity.value


def test_seed_demo_leaves_an_agent_in_shadow_with_a_scored_history() -> None:
    call_command("seed_demo", weeks=2, pending=0, stdout=io.StringIO())
    agent = Agent.objects.get(slug=demo.SHADOW_AGENT)
    shadow = agent.shadow_policy
    assert shadow is not None
    score = shadow_score(shadow)
    assert score.ready, score.overall.settled
    # Its bolder isolate_host grant has something to be judged on, and the worst cases shown.
    isolate = score.by_action["isolate_host"]
    assert isolate.would_run_decided > 10
    assert isolate.agreement.count > 0
    assert len(score.worst) == 3
    assert score.overall.net_minutes is not None
    # Only proposals from the shadow's start carry its judgement, and their events say so.
    judged = Proposal.objects.filter(shadow_policy=shadow)
    assert not judged.filter(created_at__lt=shadow.created_at).exists()
    assert Proposal.objects.filter(agent=agent, created_at__lt=shadow.created_at).exists()
    one = judged.first()
    event = AuditEvent.objects.get(event_type="proposal.submitted", proposal_id=one.id)
    assert event.data["shadow"]["version"] == shadow.version
    assert event.data["shadow"]["outcome"] == one.shadow_outcome
    assert verify_chain().ok
