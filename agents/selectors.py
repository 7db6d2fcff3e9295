"""Reads about agents and their guardrails."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings

from . import ladder, sql
from .lookalikes import readable
from .models import Agent, Asset, Criticality, Policy
from .targets import Identity, Namespace

# Policy versions are immutable (an edit publishes a new version), so a version read once can
# be kept for the life of the process. What can change (suspension, which version is live or
# in shadow, the emergency stop) is read fresh on every call: a cached version's `state` is
# not to be trusted.
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
    policy: Policy | None  # the live version: it alone decides
    emergency_stop: bool
    # The version in shadow, judging beside the live one; its outcome is only recorded.
    shadow: Policy | None = None


def routing_context(agent_id: int) -> RoutingContext:
    """The agent as it is now, its live and shadow policies and the stop, in one query (the
    versions themselves are cached: a version's content never changes, only its state, which
    this query reads fresh)."""
    found = sql.agent_now(agent_id)
    if found is None:
        raise Agent.DoesNotExist(f"no agent {agent_id}")
    return RoutingContext(
        agent=found.agent,
        policy=policy_version(found.policy_id) if found.policy_id else None,
        emergency_stop=found.stop_engaged,
        shadow=policy_version(found.shadow_id) if found.shadow_id else None,
    )


# --- the inventory --------------------------------------------------------------------------

# Tickets and alert ids name no asset: they are neither unknown assets nor critical ones, and
# their routing rests on the action's own risk.
NO_ASSET_CRITICALITY = Criticality.MEDIUM


@dataclass(frozen=True)
class InventoryMatch:
    """The inventoried assets a target may be, most critical first: one for each
    (criticality, group) among them, which is all that routing and the scope look at; and
    whether one of them is certainly the target (`exact`). A target that is none of them for
    certain may also be something the inventory does not hold."""

    identity: Identity
    assets: list[Asset]
    exact: bool = False

    @property
    def asset(self) -> Asset | None:
        return self.assets[0] if self.assets else None

    @property
    def beyond(self) -> str | None:
        """How the part of the target the inventory does not hold is rated, or None when an
        asset is certainly the target, or it is a ticket (which names no asset).

        Failing closed: UNKNOWN_ASSET_CRITICALITY for a name or an address nobody inventoried,
        and the top of the ladder for a name holding a letter the look-alike table cannot read
        (agents.lookalikes.readable): it may imitate any asset, the most critical included.
        """
        namespace = self.identity.namespace
        if self.exact or namespace is Namespace.TICKET:
            return None
        if namespace in (Namespace.HOST, Namespace.USER) and not readable(self.identity.key):
            return ladder.LADDER[-1]
        return settings.UNKNOWN_ASSET_CRITICALITY

    @property
    def criticality(self) -> str:
        """The highest among the matches and what the target may be beyond them."""
        steps = [asset.criticality for asset in self.assets[:1]]
        if self.beyond is not None:
            steps.append(self.beyond)
        if not steps:
            return NO_ASSET_CRITICALITY  # a ticket
        return max(steps, key=ladder.rank)


def inventory_match(identity: Identity) -> InventoryMatch:
    """The assets a canonical target may be: aliases included, in one indexed query."""
    if identity.namespace not in (Namespace.IP, Namespace.HOST, Namespace.USER):
        return InventoryMatch(identity, [])
    found = sql.inventory_assets(identity)
    return InventoryMatch(identity, found.assets, exact=found.exact)
