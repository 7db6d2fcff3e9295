"""A hostile callback receiver cannot delay executions, nor other agents' callbacks: with real
workers (the executions' and the callbacks' own, as the Procfile runs them) and a receiver on
127.0.0.1 that answers a byte every 4 s, 50 approvals for its agent and other agents' approvals
all execute promptly, and no delivery holds a connection longer than its deadline; while it
holds, another agent's callbacks arrive at once, because the hostile one's receiver is paused
after its first failures and its other deliveries wait without holding a thread."""

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
from tests.receivers import Receiver, TricklingReceiver

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
        # Let the first deliveries meet the deadline; after them the receiver is paused and
        # tried by one delivery at a time.
        wait_for(lambda: len(trickle.finished()) >= 3, timeout=20, what="finished deliveries")
        longest = max(hold.seconds for hold in trickle.finished())
        started = len(trickle.holds)

    assert others_done < 10, f"other agents' executions took {others_done:.1f} s"
    assert all_done < 20, f"the 60 executions took {all_done:.1f} s"
    assert longest < DEADLINE + 1.0, f"a delivery held its connection {longest:.1f} s"
    assert started >= 3
    # The executions' worker never ran a delivery.
    execution_worker = fleet.started[0]
    assert "deliver_callback[" not in execution_worker.log()
    assert "deliver_callback[" in fleet.started[1].log()


def test_a_dead_receiver_does_not_hold_up_other_agents_callbacks(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    fleet.worker(concurrency=2)
    threads = 4
    callbacks_worker = fleet.worker(
        queue=settings.CALLBACK_QUEUE,
        pool="threads",
        concurrency=threads,
        CALLBACK_DEADLINE_SECONDS=DEADLINE,
    )
    listener = factories.agent(
        "dead-listener",
        grants={"revoke_sessions": 2},
        max_pending=10**6,
        max_proposals_per_minute=10**6,
    )
    with TricklingReceiver(interval=4.0, hold=300) as trickle, Receiver() as healthy:
        Agent.objects.filter(pk=listener.agent.pk).update(
            callback_url=trickle.url, callback_secret="s" * 64
        )
        Agent.objects.filter(pk=responder.agent.pk).update(
            callback_url=healthy.url, callback_secret="h" * 64
        )
        dead_agents = submit(listener, 40, action="revoke_sessions", prefix="unheard")
        others = submit(responder, 5, action="reset_password", prefix="heard")
        for proposal in dead_agents:
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        wait_for(lambda: trickle.holds, timeout=10, what="the first callback to arrive")
        # 80 deliveries (decided and completed) now stand before the other agent's: without
        # the pause they would hold every thread for 80 x 2 s / 4 = 40 s.
        began = time.monotonic()
        for proposal in others:
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        wait_for(
            lambda: len(healthy.received) == 10,
            timeout=30,
            what="the other agent's ten callbacks",
        )
        heard_after = max(request["at"] for request in healthy.received) - began
        tried = len(trickle.holds)

    events = sorted(request["headers"]["X-SOC-Event"] for request in healthy.received)
    assert events == ["completed"] * 5 + ["decided"] * 5
    assert heard_after < 8, f"the other agent's callbacks took {heard_after:.1f} s"
    # The dead receiver was tried by the first round of threads and then one probe at a time,
    # not once per delivery.
    assert tried < 20, f"the dead receiver was called {tried} times in {heard_after:.1f} s"
    assert "Paused" in callbacks_worker.log()


def test_the_callbacks_worker_takes_its_next_message_as_soon_as_a_thread_is_free(
    fleet: Fleet, responder: factories.AgentWithKey, analyst: User
) -> None:
    # As the Procfile runs it: threads, 8 at a time. Without the event loop's wake-up timer
    # (soc_console/celery.py) these 80 callbacks took minutes: 8 messages every 5 to 10 s.
    fleet.worker(concurrency=2)
    fleet.worker(queue=settings.CALLBACK_QUEUE, pool="threads", concurrency=8)
    with Receiver() as receiver:
        Agent.objects.filter(pk=responder.agent.pk).update(
            callback_url=receiver.url, callback_secret="r" * 64
        )
        proposals = submit(responder, 40, action="reset_password", prefix="burst")
        began = time.monotonic()
        for proposal in proposals:
            services.proposal_approve(proposal_id=proposal.id, analyst=analyst)
        wait_for(lambda: len(receiver.received) == 80, timeout=60, what="80 callbacks")
        took = max(request["at"] for request in receiver.received) - began

    assert took < 10, f"80 callbacks took {took:.1f} s"
