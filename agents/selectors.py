"""Reads about agents and their guardrails."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.db import connection

from soc_console import rows

from .models import Agent, Policy

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


# One plain statement: this runs for every proposal, and composing the equivalent ORM query
# (a Subquery and an Exists) costs more time than the database spends answering it.
# The agent's columns are listed, not `a.*`: a prepared `*` fails once a migration adds one.
_ROUTING_SQL = """
SELECT {agent},
       (SELECT p.id FROM agents_policy p WHERE p.agent_id = a.id
        ORDER BY p.version DESC LIMIT 1) AS current_policy_id,
       EXISTS (SELECT 1 FROM agents_emergencystop s WHERE s.engaged) AS stop_engaged
FROM agents_agent a
WHERE a.id = %s
"""


def routing_context(agent_id: int) -> RoutingContext:
    """The agent as it is now, its current policy and the stop, in one query."""
    sql = _ROUTING_SQL.format(agent=rows.columns(Agent, connection, "a"))
    agent = next(iter(Agent.objects.raw(sql, [agent_id])), None)
    if agent is None:
        raise Agent.DoesNotExist(f"no agent {agent_id}")
    policy = policy_version(agent.current_policy_id) if agent.current_policy_id else None
    return RoutingContext(agent=agent, policy=policy, emergency_stop=bool(agent.stop_engaged))
