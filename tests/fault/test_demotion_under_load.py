"""A demotion fired while automatic executions of its grant are queued and a real worker is
taking them: from the commit of the demotion, none of them starts.

The worker claims one execution after another (each connector call takes a while, so most
are still queued when the demotion commits); an analyst rolls back an earlier automatic
action, which fires the rule. What must hold: every `execution.started` of the grant comes
before `grant.demoted` in the audit chain (the chain's order is the order of commits), the
executions not started by then end held for an analyst, and the connector saw only the ones
that started before.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.auth.models import User

from approvals import services
from approvals.models import ConnectorCall, Execution, ExecutionStatus, ProposalStatus
from audit.models import AuditEvent
from tests import factories
from tests.fault.conftest import Fleet
from tests.processes import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

QUEUED = 16


def test_no_automatic_execution_of_a_demoted_grant_starts_after_the_demotion_commits(
    fleet: Fleet, analyst: User
) -> None:
    bot = factories.agent(
        "auto-responder",
        grants={"block_ip": 3},
        budgets={"block_ip": (10**6, 10**6)},
        max_pending=10**6,
        max_proposals_per_minute=10**6,
    )
    # Each call takes a second, so that the demotion lands while most of the burst is queued
    # even on a busy machine (at 250 ms, a loaded run once let all sixteen start first).
    fleet.worker(concurrency=2, CONNECTOR_LATENCY_MS=1000)
    first = factories.proposal(bot, action="block_ip", target="203.0.113.1", confidence=0.97)
    wait_for(
        lambda: Execution.objects.filter(proposal=first, status=ExecutionStatus.SUCCEEDED).exists(),
        timeout=20,
        what="the first automatic action",
    )
    burst = [
        factories.proposal(bot, action="block_ip", target=f"203.0.113.{n}", confidence=0.97)
        for n in range(2, 2 + QUEUED)
    ]
    assert {p.status for p in burst} == {ProposalStatus.AUTO_APPROVED}
    # Fire while the worker is in the middle of the burst: some started, most still queued.
    wait_for(
        lambda: (
            AuditEvent.objects.filter(
                event_type="execution.started", proposal_id__in=[p.id for p in burst]
            ).count()
            >= 2
        ),
        timeout=20,
        what="the worker to start on the burst",
    )
    services.rollback_request(
        execution_id=first.execution.id, analyst=analyst, reason="our own scanner"
    )
    demoted = AuditEvent.objects.get(event_type="grant.demoted")
    assert demoted.data["rule"] == "automatic_rollback"

    def settled() -> Counter[str]:
        found = Counter(
            Execution.objects.filter(proposal__in=burst).values_list("status", flat=True)
        )
        busy = found[ExecutionStatus.QUEUED] + found[ExecutionStatus.RUNNING]
        return found if busy == 0 else Counter()

    outcome = wait_for(settled, timeout=30, what="the burst to settle")
    started = AuditEvent.objects.filter(
        event_type="execution.started", proposal_id__in=[p.id for p in burst]
    )
    # The proof: nothing of the grant started after the demotion's commit.
    assert not started.filter(seq__gt=demoted.seq).exists()
    ran = started.count()
    assert ran >= 2
    assert outcome == Counter({ExecutionStatus.SUCCEEDED: ran, ExecutionStatus.HELD: QUEUED - ran})
    # Held by the demotion itself, or by a claim that found the grant demoted: each waits
    # for an analyst, and none reached the firewall.
    held = Execution.objects.filter(proposal__in=burst, status=ExecutionStatus.HELD)
    assert {
        e.data["why"]
        for e in AuditEvent.objects.filter(
            event_type="execution.held", proposal_id__in=[x.proposal_id for x in held]
        )
    } == {"grant demoted"}
    assert not ConnectorCall.objects.filter(
        idempotency_key__in=[x.idempotency_key for x in held]
    ).exists()
