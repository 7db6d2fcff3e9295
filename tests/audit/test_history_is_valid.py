from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import transaction

from agents import catalogue
from agents.models import Agent
from approvals import demo
from approvals.demo.history import demo_end, seed_history
from approvals.models import Decision, Proposal
from audit.models import AuditEvent
from audit.verify import verify_chain
from bench.demo_story import story_told

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
    # A sample to promote on, its bolder isolate_host grant judged, the worst cases shown.
    told = story_told(reports=False)
    assert not told.problems, told.problems
    # Only proposals from the shadow's start carry its judgement, and their events say so.
    judged = Proposal.objects.filter(shadow_policy=shadow)
    assert not judged.filter(created_at__lt=shadow.created_at).exists()
    assert Proposal.objects.filter(agent=agent, created_at__lt=shadow.created_at).exists()
    one = judged.first()
    event = AuditEvent.objects.get(event_type="proposal.submitted", proposal_id=one.id)
    assert event.data["shadow"]["version"] == shadow.version
    assert event.data["shadow"]["outcome"] == one.shadow_outcome
    assert verify_chain().ok


def _drawn(end: datetime) -> list[tuple]:
    """The demo history seeded to end at `end`, as offsets from it, then rolled back."""
    with transaction.atomic():
        seed_history(weeks=1, rng=random.Random(7), end=end)
        rows = [
            (*row[:-1], row[-1] - end)
            for row in Decision.objects.order_by("created_at").values_list(
                "proposal__agent__slug",
                "proposal__action",
                "proposal__target",
                "proposal__confidence",
                "proposal__status",
                "analyst__username",
                "verdict",
                "seconds_on_card",
                "created_at",
            )
        ]
        transaction.set_rollback(True)
    return rows


def test_the_demo_history_depends_on_the_hour_of_the_week_it_ends_at_alone() -> None:
    # So that bench.demo_story, by seeding one history per hour of the week, checks every
    # history the demo can have.
    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    seeded_at = datetime(2026, 12, 2, 5, 47, 13, tzinfo=UTC)
    end = demo_end(seeded_at)
    assert end == datetime(2026, 12, 2, 5, tzinfo=UTC)
    first = _drawn(end)
    assert len(first) > 100
    # A week and three weeks later, at another minute of the hour that gives the same history.
    for later in (timedelta(days=7, minutes=41), timedelta(weeks=3, minutes=-17)):
        assert _drawn(demo_end(seeded_at + later)) == first
    # An hour on, another history.
    assert _drawn(demo_end(seeded_at + timedelta(hours=1))) != first


@pytest.mark.parametrize("seed", [3, 11])
def test_nothing_in_a_seeded_history_happens_after_its_end(seed: int) -> None:
    """Reported: a demo seeded at 12:35 showed a rollback requested at 13:14. The history ends
    at its end: a proposal drawn shortly before it still waits there (escalated if its time
    had come, or half approved), and a rollback not yet asked for is not made up."""
    from approvals.models import Execution, ExecutionStatus

    demo.ensure_users()
    demo.ensure_agents()
    demo.ensure_assets()
    end = datetime(2026, 12, 2, 12, tzinfo=UTC)
    seed_history(weeks=1, rng=random.Random(seed), end=end)
    # The history's events are its proposals' (the agents and assets are set up now).
    late = AuditEvent.objects.filter(at__gte=end, proposal_id__isnull=False)
    assert not late.exists(), list(late.values_list("event_type", "at")[:5])
    assert not Decision.objects.filter(created_at__gte=end).exists()
    assert not Execution.objects.filter(updated_at__gte=end).exists()
    # What still waits at the end is pending, as the live queue would hold it.
    waiting = Proposal.objects.filter(status="pending")
    assert all(p.decided_at is None for p in waiting)
    assert Execution.objects.filter(status=ExecutionStatus.ROLLED_BACK).exists()
    assert verify_chain().ok
