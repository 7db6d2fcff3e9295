"""The queue page: what a card shows, priority order, and that it stays fast at 5,000 pending."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.template.base import Template
from django.test import Client
from django.test import utils as test_utils
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import catalogue
from agents.models import Criticality
from approvals.models import Decision, Execution, ExecutionStatus, Proposal, ProposalStatus
from approvals.priority import priority_key
from approvals.selectors import Counters, queue_counters
from tests import factories

pytestmark = pytest.mark.django_db


def test_card_shows_what_the_analyst_needs(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    proposal = factories.proposal(
        agent_with_key,
        target="dc01.corp.example",
        confidence=0.83,
        rationale="Beaconing to a domain registered yesterday.",
        evidence=[{"kind": "alert", "ref": "SIEM-4821", "note": "EDR high"}],
    )
    page = signed_in(analyst).get("/").content.decode()
    card = page[page.index(f'id="card-{proposal.id}"') :]
    card = card[: card.index("</article>")]
    for expected in [
        "Isolate host",  # the action in words
        "dc01.corp.example",
        "Cut dc01.corp.example off the network except for the EDR channel.",  # the effect
        "triage-bot",
        "0.83",
        "Beaconing to a domain registered yesterday.",
        "SIEM-4821",
        "EDR high",
        "critical asset",
        "high risk",
        "0 of 2",
        "two analysts; the second must be a senior analyst",
        f'datetime="{proposal.escalate_at.isoformat()}"',  # time left before escalation
        f'datetime="{proposal.expires_at.isoformat()}"',  # and before expiry
        f'href="/proposals/{proposal.id}/"',
        'name="verdict" value="approve"',
        'name="verdict" value="reject"',
    ]:
        assert expected in card, expected
    assert "1 pending" in page.replace('<strong data-count="pending">1</strong>', "1")


def test_card_and_page_show_the_canonical_target_beside_the_one_submitted(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    proposal = factories.proposal(agent_with_key, target="DC01")
    client = signed_in(analyst)
    page = client.get("/").content.decode()
    card = page[page.index(f'id="card-{proposal.id}"') :]
    card = card[: card.index("</article>")]
    assert '<code class="target">DC01</code> <span class="canonical"' in card
    assert '= <code class="target">dc01</code>' in card
    assert "critical asset" in card
    detail = client.get(f"/proposals/{proposal.id}/").content.decode()
    assert "<code>DC01</code> as submitted; canonical <code>dc01</code>" in detail
    assert "(dc01.corp.example, no group" in detail  # the inventory entry it matched


def test_queue_is_ordered_by_priority(
    signed_in: Callable[[User], Client], analyst: User, agent_with_key: factories.AgentWithKey
) -> None:
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    factories.asset("ws-0142.corp.example", criticality=Criticality.LOW)
    low = factories.proposal(agent_with_key, target="ws-0142.corp.example", confidence=0.6)
    critical = factories.proposal(agent_with_key, target="dc01.corp.example", confidence=0.6)
    medium = factories.proposal(agent_with_key, target="build07.corp.example", confidence=0.6)
    page = signed_in(analyst).get("/").content.decode()
    positions = [page.index(f'id="card-{p.id}"') for p in (critical, medium, low)]
    assert positions == sorted(positions)


def test_decided_proposals_are_not_in_the_queue(
    signed_in: Callable[[User], Client], analyst: User, pending: Proposal
) -> None:
    client = signed_in(analyst)
    assert f'id="card-{pending.id}"' in client.get("/").content.decode()
    client.post(f"/proposals/{pending.id}/decide/", {"verdict": "approve"}, HTTP_HX_REQUEST="true")
    page = client.get("/").content.decode()
    assert f'id="card-{pending.id}"' not in page
    assert "No proposals waiting." in page


def test_htmx_request_gets_only_the_queue_partial(
    signed_in: Callable[[User], Client], analyst: User, pending: Proposal
) -> None:
    html = signed_in(analyst).get("/", HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<section id="queue"')
    assert f'id="card-{pending.id}"' in html
    assert "<html" not in html and "topbar" not in html


@contextmanager
def _uninstrumented_templates() -> Iterator[None]:
    """The test harness wraps every template render to record its context for assertions;
    that bookkeeping, not the view, would dominate a render of fifty cards. Time what a
    server does: the real render."""
    saved = getattr(test_utils._TestState, "saved_data", None)
    instrumented = Template._render
    if saved is not None:
        Template._render = saved.template_render
    try:
        yield
    finally:
        Template._render = instrumented


def _bulk_pending(agent: factories.AgentWithKey, count: int, approver: User) -> None:
    """Pending proposals as proposal_submit would leave them, written in bulk for speed:
    a realistic mix of actions, targets, criticality and confidence, and one in five
    critical ones already holding a first approval."""
    rng = random.Random(count)
    policy = agent.agent.current_policy
    now = timezone.now()
    actions = ["isolate_host", "block_ip", "disable_user", "kill_process"]
    targets = {
        "isolate_host": lambda i: f"ws-{i:04d}.corp.example",
        "block_ip": lambda i: f"203.0.{i // 250 % 250}.{i % 250 + 1}",
        "disable_user": lambda i: f"user{i}@corp.example",
        "kill_process": lambda i: f"srv-{i:04d}.corp.example",
    }
    rows = []
    for i in range(count):
        action = catalogue.get(rng.choice(actions))
        assert action is not None
        criticality = rng.choice(["low", "medium", "medium", "high", "critical"])
        confidence = round(rng.uniform(0.5, 0.89), 2)
        created = now - timedelta(seconds=rng.randint(0, 3600))
        rows.append(
            Proposal(
                id=uuid.uuid4(),
                agent=agent.agent,
                action=action.name,
                target=targets[action.name](i),
                params={},
                confidence=confidence,
                rationale="Repeated beaconing to a newly registered domain; parent is a macro.",
                evidence=[{"kind": "alert", "ref": f"SIEM-{10000 + i}"}],
                severity="high",
                status=ProposalStatus.PENDING,
                routing_explanation="level 2 needs a human",
                required_approvals=2 if criticality == "critical" else 1,
                approvals=0,
                policy=policy,
                policy_version=policy.version,
                criticality=criticality,
                risk=action.risk,
                priority=priority_key(
                    risk=action.risk,
                    criticality=criticality,
                    confidence=confidence,
                    created_at=created,
                ),
                idempotency_key=uuid.uuid4().hex,
                request_hash=uuid.uuid4().hex,
                created_at=created,
                escalate_at=created + timedelta(minutes=15),
                expires_at=created + timedelta(hours=4),
            )
        )
    Proposal.objects.bulk_create(rows, batch_size=1000)
    half_approved = [p for p in rows if p.criticality == "critical"][::5]
    Decision.objects.bulk_create(
        Decision(
            proposal=p, analyst=approver, verdict="approve", seconds_on_card=9.0, created_at=now
        )
        for p in half_approved
    )
    Proposal.objects.filter(pk__in=[p.pk for p in half_approved]).update(approvals=1)


def _render(client: Client) -> tuple[int, str]:
    with _uninstrumented_templates(), CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_queue_query_count_does_not_grow_with_the_pending_count(
    signed_in: Callable[[User], Client],
    analyst: User,
    senior: User,
    agent_with_key: factories.AgentWithKey,
    settings: object,
) -> None:
    client = signed_in(analyst)
    _bulk_pending(agent_with_key, 10, senior)
    small_queries, small_page = _render(client)
    assert small_page.count('class="card ') == 10

    _bulk_pending(agent_with_key, 4990, senior)
    assert Proposal.objects.filter(status="pending").count() == 5000
    client.get("/")  # warm: templates compiled, connection open
    big_queries, big_page = _render(client)
    assert big_queries == small_queries
    assert big_page.count('class="card ') == 50  # one page of the highest priority
    assert '<strong data-count="pending">5000</strong>' in big_page
    assert "Showing the 50 highest-priority proposals" in big_page
    assert "approved by sam" in big_page or "1 of 2" in big_page

    # The render time is a benchmark's figure (python -m bench.queue), not asserted here.


def test_the_top_bar_counts_each_kind_of_work(agent_with_key: factories.AgentWithKey) -> None:
    now = timezone.now()
    made = [
        factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example") for n in range(11)
    ]
    ids = [p.pk for p in made]
    Proposal.objects.filter(pk=ids[0]).update(escalated_at=now)
    Proposal.objects.filter(pk__in=ids[1:3]).update(approvals=1)
    Proposal.objects.filter(pk=ids[3]).update(status=ProposalStatus.AUTO_APPROVED)
    Proposal.objects.filter(pk=ids[4]).update(status=ProposalStatus.AUTO_APPROVED, reviewed_at=now)
    Proposal.objects.filter(pk__in=ids[5:]).update(status=ProposalStatus.APPROVED)
    for proposal_id, status in zip(
        ids[5:],
        [
            ExecutionStatus.HELD,
            ExecutionStatus.HELD,
            ExecutionStatus.FAILED,
            ExecutionStatus.ROLLBACK_FAILED,
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.QUEUED,
        ],
        strict=True,
    ):
        Execution.objects.create(
            proposal_id=proposal_id,
            status=status,
            idempotency_key=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
        )

    assert queue_counters() == Counters(
        pending=3, escalated=1, awaiting_second=2, held=2, unreviewed_auto=1, failed=2
    )
