"""Reads about agents and their guardrails."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings

from . import sql
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


def inventory_match(identity: Identity) -> InventoryMatch:
    """The assets a canonical target may be: aliases included, in one indexed query."""
    if identity.namespace not in (Namespace.IP, Namespace.HOST, Namespace.USER):
        return InventoryMatch(identity, [])
    return InventoryMatch(identity, sql.inventory_assets(identity))
