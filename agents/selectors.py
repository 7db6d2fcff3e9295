"""Reads about agents and their guardrails."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Subquery

from .models import Agent, EmergencyStop, Policy

# Policy versions are immutable (an edit publishes a new version), so a version read once can
# be kept for the life of the process. What can change (suspension, the newest version, the
# emergency stop) is read fresh on every call.
_policies: dict[int, Policy] = {}
_policies_lock = threading.Lock()


def policy_version(policy_id: int) -> Policy:
    cached = _policies.get(policy_id)
    if cached is None:
        cached = Policy.objects.prefetch_related("grants").get(pk=policy_id)
        list(cached.grants.all())
        with _policies_lock:
            _policies[policy_id] = cached
    return cached


@dataclass(frozen=True)
class RoutingContext:
    agent: Agent
    policy: Policy | None
    emergency_stop: bool


def routing_context(agent_id: int) -> RoutingContext:
    """The agent as it is now, its current policy and the stop, in one query."""
    newest = Policy.objects.filter(agent_id=OuterRef("pk")).order_by("-version").values("pk")[:1]
    agent = (
        Agent.objects.annotate(
            current_policy_id=Subquery(newest),
            stop_engaged=Exists(EmergencyStop.objects.filter(engaged=True)),
        )
        .filter(pk=agent_id)
        .get()
    )
    policy = policy_version(agent.current_policy_id) if agent.current_policy_id else None
    return RoutingContext(agent=agent, policy=policy, emergency_stop=agent.stop_engaged)
