"""Reads about agents and their guardrails."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from soc_console import rows

from . import ladder
from .models import Agent, Asset, AssetAlias, Criticality, Policy
from .targets import Identity, Namespace

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


def forget_policies() -> None:
    """Drop the cached versions. A test database that rolls back reuses ids (SQLite does);
    a deployment never needs this, since a committed version never changes."""
    with _policies_lock:
        _policies.clear()


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


# --- the inventory --------------------------------------------------------------------------

# Tickets and alert ids name no asset: they are neither unknown assets nor critical ones, and
# their routing rests on the action's own risk.
NO_ASSET_CRITICALITY = Criticality.MEDIUM


@dataclass(frozen=True)
class InventoryMatch:
    """The inventoried assets a target may be, most critical first: one for each
    (criticality, group) among them, which is all that routing and the scope look at."""

    identity: Identity
    assets: list[Asset]

    @property
    def asset(self) -> Asset | None:
        return self.assets[0] if self.assets else None

    @property
    def criticality(self) -> str:
        """The highest among the matches; a target that matches nothing fails closed."""
        if self.assets:
            return self.assets[0].criticality
        if self.identity.namespace is Namespace.TICKET:
            return NO_ASSET_CRITICALITY
        return settings.UNKNOWN_ASSET_CRITICALITY


# One plain statement on the intake path. A broad network may touch thousands of assets; what
# routing needs is the most critical of them and every (criticality, group) among them for the
# scope, so one asset per pair comes back, most critical first.
_INVENTORY_SQL = """
SELECT {asset} FROM (
    SELECT a.*, ROW_NUMBER() OVER (
        PARTITION BY a.criticality, a."group" ORDER BY a.identifier
    ) AS nth
    FROM {asset_table} a
    WHERE a.id IN (
        SELECT m.asset_id FROM {alias_table} m WHERE m.namespace = %s AND ({where})
    )
) a
WHERE a.nth = 1
ORDER BY {most_critical_first}, a.identifier
"""
_MOST_CRITICAL_FIRST = "CASE a.criticality {} ELSE {} END".format(
    " ".join(
        f"WHEN '{step}' THEN {len(ladder.LADDER) - 1 - ladder.rank(step)}" for step in ladder.LADDER
    ),
    len(ladder.LADDER),
)


def _inventory_condition(identity: Identity) -> tuple[str, list[object]]:
    """Which alias rows a target matches, failing closed.

    - An address: that address, or an inventoried network around it.
    - A network: every inventoried address or network it overlaps.
    - A host name: the same name; a shorter spelling of it in the inventory (`dc01`,
      `dc01.corp` for `dc01.corp.example`); a longer one (`dc01.corp.example` for `dc01`).
    - A user: the same principal; an inventoried bare or down-level name with its local part;
      for a bare or unmapped down-level target, every principal with that local part.
    """
    if identity.namespace is Namespace.IP:
        if identity.address is not None:
            (point, _), *_ = identity.ranges
            return "m.key = %s OR (m.network AND m.first <= %s AND m.last >= %s)", [
                identity.key,
                point,
                point,
            ]
        clauses = " OR ".join("(m.first <= %s AND m.last >= %s)" for _ in identity.ranges)
        return clauses, [bound for low, high in identity.ranges for bound in (high, low)]
    if identity.namespace is Namespace.HOST:
        prefixes = identity.host_prefixes()
        marks = ", ".join(["%s"] * len(prefixes))
        return f"m.key IN ({marks}) OR (m.label = %s AND m.key LIKE %s)", [
            *prefixes,
            identity.label,
            identity.key + ".%",
        ]
    if identity.short:
        return "m.label = %s", [identity.label]
    return "m.key IN (%s, %s)", [identity.key, identity.label]


def inventory_match(identity: Identity) -> InventoryMatch:
    """The assets a canonical target may be: aliases included, in one indexed query."""
    if identity.namespace not in (Namespace.IP, Namespace.HOST, Namespace.USER):
        return InventoryMatch(identity, [])
    where, params = _inventory_condition(identity)
    sql = _INVENTORY_SQL.format(
        asset=rows.columns(Asset, connection, "a"),
        asset_table=connection.ops.quote_name(Asset._meta.db_table),
        alias_table=connection.ops.quote_name(AssetAlias._meta.db_table),
        where=where,
        most_critical_first=_MOST_CRITICAL_FIRST,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [identity.namespace.value, *params])
        found = cursor.fetchall()
    return InventoryMatch(identity, [rows.instance(Asset, row, connection) for row in found])
