"""A hostile callback receiver cannot delay executions: with real workers (the executions' and
the callbacks' own, as the Procfile runs them) and a receiver on 127.0.0.1 that answers a byte
every 4 s, 50 approvals for its agent and other agents' approvals all execute promptly, and no
delivery holds a connection longer than its deadline."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from agents.models import Agent
from approvals import services
from approvals.models import Execution, ExecutionStatus
from tests import factories
from tests.fault.conftest import Fleet
from tests.fault.test_worker_and_broker_faults import submit
from tests.processes import wait_for
from tests.receivers import TricklingReceiver

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

DEADLINE = 2.0


def _succeeded(agent: Agent) -> int:
    return Execution.objects.filter(proposal__agent=agent, status=ExecutionStatus.SUCCEEDED).count()


def test_a_trickling_callback_receiver_never_delays_executions(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    fleet.worker(concurrency=2)  # the executions' worker, as in the Procfile
    fleet.worker(
        queue=settings.CALLBACK_QUEUE,
        pool="threads",
        concurrency=8,
        CALLBACK_DEADLINE_SECONDS=DEADLINE,
    )
    listener = factories.agent(
        "trickle-listener",
        grants={"revoke_sessions": 2},
        max_pending=10**6,
        max_proposals_per_minute=10**6,  # 50 approvals at once: not the breaker's test
    )
    with TricklingReceiver(interval=4.0, hold=300) as trickle:
        Agent.objects.filter(pk=listener.agent.pk).update(
            callback_url=trickle.url, callback_secret="s" * 64
        )
        slow_agents = submit(listener, 50, action="revoke_sessions", prefix="listened")
        others = submit(responder, 10, action="reset_password", prefix="other")

        began = time.monotonic()
        for proposal in slow_agents:
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        wait_for(lambda: trickle.holds, timeout=10, what="the first callback to arrive")
        # The receiver now holds deliveries; other agents' approvals go on running at once.
        approved_at = {}
        for proposal in others:
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
            approved_at[proposal.id] = time.monotonic()
        wait_for(
            lambda: _succeeded(responder.agent) == 10,
            timeout=15,
            what="the other agents' executions",
        )
        others_done = time.monotonic() - min(approved_at.values())
        wait_for(
            lambda: _succeeded(listener.agent) == 50,
            timeout=15,
            what="the listening agent's own executions",
        )
        all_done = time.monotonic() - began
        # Let a few rounds of deliveries (and retries) meet the deadline.
        wait_for(lambda: len(trickle.finished()) >= 16, timeout=20, what="finished deliveries")
        longest = max(hold.seconds for hold in trickle.finished())
        started = len(trickle.holds)

    assert others_done < 10, f"other agents' executions took {others_done:.1f} s"
    assert all_done < 20, f"the 60 executions took {all_done:.1f} s"
    assert longest < DEADLINE + 1.0, f"a delivery held its connection {longest:.1f} s"
    assert started >= 16
    # The executions' worker never ran a delivery.
    execution_worker = fleet.started[0]
    assert "deliver_callback[" not in execution_worker.log()
    assert "deliver_callback[" in fleet.started[1].log()
