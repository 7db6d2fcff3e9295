"""Where a live card goes starts with one statement (sql.proposal_progress_ahead): the card's
progress and how many pending cards come before it, counted up to a page. That count must be
the queue's own order, whatever the priorities, their ties and the times."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals import placement, selectors
from approvals.models import Proposal, ProposalStatus
from tests import factories

pytestmark = pytest.mark.django_db

HOSTS = (f"place-{n:04d}.corp.example" for n in itertools.count(1))


@pytest.fixture
def busy_agent(db: None) -> factories.AgentWithKey:
    return factories.agent(
        "placement-bot",
        grants={"isolate_host": 2},
        max_pending=10_000,
        max_proposals_per_minute=10_000,
    )


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([-3.5, 0.0, 0.0, 2.25, 7.0]),  # ties are the common case
            st.integers(min_value=0, max_value=4),  # seconds after the first: ties too
            st.sampled_from([ProposalStatus.PENDING] * 3 + [ProposalStatus.REJECTED]),
        ),
        min_size=1,
        max_size=8,
    ),
    up_to=st.integers(min_value=1, max_value=6),
)
def test_the_count_before_a_card_is_the_queues_order_up_to_the_limit(
    busy_agent: factories.AgentWithKey, settings: Any, rows: list[tuple], up_to: int
) -> None:
    Proposal.objects.filter(status=ProposalStatus.PENDING).update(status=ProposalStatus.EXPIRED)
    start = timezone.now()
    made = []
    for priority, second, status in rows:
        proposal = factories.proposal(busy_agent, target=next(HOSTS))
        Proposal.objects.filter(pk=proposal.pk).update(
            priority=priority, created_at=start + timedelta(seconds=second), status=status
        )
        proposal.refresh_from_db()
        made.append(proposal)

    def key(p: Proposal) -> tuple:
        return (-p.priority, p.created_at)

    pending = [p for p in made if p.status == ProposalStatus.PENDING]
    settings.QUEUE_PAGE_SIZE = up_to
    for proposal in made:
        progress, ahead = selectors.proposal_progress_ahead(proposal.pk, up_to)
        assert progress == selectors.proposal_progress(proposal.pk)
        before = sum(1 for other in pending if key(other) < key(proposal))
        assert ahead == min(before, up_to)
        if proposal.status == ProposalStatus.PENDING and before >= up_to:
            # A page's worth before it: below the page, on the count alone.
            assert placement.placement_of(proposal, ahead).off_page
