"""Every hand-written SQL statement of agents.

Each runs on every agent call or every proposal (the API key check, the routing context, the
inventory match), where building the ORM's query costs more than the database spends answering
it; each says what it saves. Table names come from the models' `_meta`, never from the text;
nothing from a request is formatted into a statement (values go as parameters). Rows become
model instances through soc_console.rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Model

from soc_console import rows

from . import ladder
from .models import Agent, ApiKey, Asset, AssetAlias, EmergencyStop, Policy, PolicyState
from .targets import Identity, Namespace


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


_KEY_SQL = """
SELECT {key}, {agent} FROM {key_table} AS k JOIN {agent_table} AS a ON a.id = k.agent_id
 WHERE k.prefix = %s
"""


def key_with_agent(prefix: str) -> ApiKey | None:
    """The key with that prefix and its agent: one plain statement, as every API call asks it."""
    with connection.cursor() as cursor:
        cursor.execute(
            _KEY_SQL.format(
                key=rows.columns(ApiKey, connection, "k"),
                agent=rows.columns(Agent, connection, "a"),
                key_table=_table(ApiKey),
                agent_table=_table(Agent),
            ),
            [prefix],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    split = rows.width(ApiKey)
    key = rows.instance(ApiKey, row[:split], connection)
    ApiKey.agent.field.set_cached_value(key, rows.instance(Agent, row[split:], connection))
    return key


# One plain statement: this runs for every proposal, and composing the equivalent ORM query
# (a Subquery and an Exists) costs more time than the database spends answering it.
# The agent's columns are listed, not `a.*`: a prepared `*` fails once a migration adds one.
# The live policy is PolicyQuerySet.live()'s: the highest version whose state is live; the
# shadow, at most one (a partial unique constraint), comes in the same statement, so judging a
# proposal under it costs the intake no query of its own.
_ROUTING_SQL = """
SELECT {agent},
       (SELECT p.id FROM {policy_table} p WHERE p.agent_id = a.id AND p.state = %s
        ORDER BY p.version DESC LIMIT 1) AS current_policy_id,
       (SELECT p.id FROM {policy_table} p WHERE p.agent_id = a.id AND p.state = %s
        LIMIT 1) AS shadow_policy_id,
       EXISTS (SELECT 1 FROM {stop_table} s WHERE s.engaged) AS stop_engaged
FROM {agent_table} a
WHERE a.id = %s
"""


@dataclass(frozen=True)
class AgentNow:
    agent: Agent
    policy_id: int | None  # the live version
    shadow_id: int | None  # the version in shadow, if any
    stop_engaged: bool


def agent_now(agent_id: int) -> AgentNow | None:
    """The agent as it is now, the ids of its live and shadow policy versions, and whether the
    stop is engaged; None when there is no such agent."""
    statement = _ROUTING_SQL.format(
        agent=rows.columns(Agent, connection, "a"),
        policy_table=_table(Policy),
        stop_table=_table(EmergencyStop),
        agent_table=_table(Agent),
    )
    params = [PolicyState.LIVE.value, PolicyState.SHADOW.value, agent_id]
    agent = next(iter(Agent.objects.raw(statement, params)), None)
    if agent is None:
        return None
    return AgentNow(
        agent, agent.current_policy_id, agent.shadow_policy_id, bool(agent.stop_engaged)
    )


# One plain statement on the intake path. A broad network may touch thousands of assets; what
# routing needs is the most critical of them and every (criticality, group) among them for the
# scope, so one asset per pair comes back, most critical first, each row saying whether any
# matched name is certainly the target (`exact`, the same on every row).
_INVENTORY_SQL = """
SELECT {asset}, a.exact FROM (
    SELECT a.*, MAX(m.exact) OVER () AS exact, ROW_NUMBER() OVER (
        PARTITION BY a.criticality, a."group" ORDER BY a.identifier
    ) AS nth
    FROM {asset_table} a
    JOIN (
        SELECT m.asset_id, MAX(CASE WHEN {exact} THEN 1 ELSE 0 END) AS exact
        FROM {alias_table} m WHERE m.namespace = %s AND ({where})
        GROUP BY m.asset_id
    ) m ON m.asset_id = a.id
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
        return f"m.key IN ({marks}) OR (m.label = %s AND m.key LIKE %s ESCAPE '!')", [
            *prefixes,
            identity.label,
            _starting(identity.key),
        ]
    if identity.short:
        return "m.label = %s", [identity.label]
    return "m.key IN (%s, %s)", [identity.key, identity.label]


def _exact_condition(identity: Identity) -> tuple[str, list[object]]:
    """Which of the matched alias rows are certainly the target, not only possibly it.

    - An address is any inventoried name it matched: itself, or the network it lies in.
    - A network is an inventoried network only if that one holds all of it: a /1 around one
      inventoried workstation is two billion addresses the inventory says nothing about.
    - A host name is the inventoried name it equals; a single label (`dc01`) is also any
      inventoried name it starts, as the search domain completes it. A partly qualified name
      (`shop.example.co` for `shop.example.co.uk`), or an inventoried name that is only the
      start of it (`ws-0142.corp.example` for `ws-0142.corp.example.attacker.net`), may be
      another host.
    - A user is any inventoried principal it matched.
    """
    if identity.namespace is Namespace.IP and identity.address is None:
        low, high = identity.ranges[0]
        return "m.first <= %s AND m.last >= %s", [low, high]
    if identity.namespace is Namespace.HOST and identity.short:
        # One label, completed by the search domain: any inventoried name with it.
        return "m.key = %s OR m.key LIKE %s ESCAPE '!'", [identity.key, _starting(identity.key)]
    if identity.namespace is Namespace.HOST:
        return "m.key = %s", [identity.key]
    return "1 = 1", []


def _starting(key: str) -> str:
    """A LIKE pattern for the names that start with `key` and a dot: `key`'s own `%` and `_`
    (a skeleton may hold them) stand for themselves."""
    return key.replace("!", "!!").replace("%", "!%").replace("_", "!_") + ".%"


@dataclass(frozen=True)
class Inventoried:
    assets: list[Asset]  # one per (criticality, group), most critical first
    exact: bool  # whether any of them is certainly the target


def inventory_assets(identity: Identity) -> Inventoried:
    """The inventoried assets a canonical IP, host or user target may be, most critical first:
    one per (criticality, group), aliases included, in one indexed query, and whether any of
    them is certainly the target."""
    where, params = _inventory_condition(identity)
    exact, exact_params = _exact_condition(identity)
    statement = _INVENTORY_SQL.format(
        asset=rows.columns(Asset, connection, "a"),
        asset_table=_table(Asset),
        alias_table=_table(AssetAlias),
        exact=exact,
        where=where,
        most_critical_first=_MOST_CRITICAL_FIRST,
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*exact_params, identity.namespace.value, *params])
        found = cursor.fetchall()
    return Inventoried(
        [rows.instance(Asset, row[:-1], connection) for row in found],
        exact=any(row[-1] for row in found),
    )
