"""State changes for agents, keys and policies. Each owns its transaction and audit event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import log

from . import keys
from .models import Agent, ApiKey, Asset, Grant, Policy

POLICY_FIELDS = (
    "purpose",
    "scope_tiers",
    "scope_groups",
    "allowed_connectors",
    "auto_threshold",
    "review_threshold",
    "escalate_after_minutes",
    "expire_after_minutes",
    "notify",
    "required_evidence",
    "rollback_procedure",
)


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str


def _check_policy(fields: dict[str, Any], grants: dict[str, int]) -> None:
    auto = float(fields.get("auto_threshold", 0.9))
    review = float(fields.get("review_threshold", 0.5))
    if not (0.0 <= review <= 1.0 and 0.0 <= auto <= 1.0):
        raise PolicyError("thresholds must lie between 0 and 1")
    if review > auto:
        raise PolicyError(f"review threshold {review} is above the auto threshold {auto}")
    for action, level in grants.items():
        if not isinstance(level, int) or not 0 <= level <= 4:
            raise PolicyError(f"grant {action}={level}: the level must be 0 to 4")


@transaction.atomic
def policy_publish(
    *, agent: Agent, grants: dict[str, int] | None = None, by: str, **fields: Any
) -> Policy:
    """Publish a new policy version; unspecified parts carry over from the current one."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise PolicyError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    Agent.objects.select_for_update().get(pk=agent.pk)
    current = agent.policies.order_by("-version").first()
    merged: dict[str, Any] = {}
    merged_grants: dict[str, int] = {}
    if current is not None:
        merged = {name: getattr(current, name) for name in POLICY_FIELDS}
        merged_grants = {g.action: g.level for g in current.grants.all()}
    merged.update(fields)
    if grants is not None:
        merged_grants.update(grants)
    _check_policy(merged, merged_grants)
    policy = Policy.objects.create(
        agent=agent, version=(current.version + 1 if current else 1), created_by=by, **merged
    )
    Grant.objects.bulk_create(
        Grant(policy=policy, action=action, level=level)
        for action, level in sorted(merged_grants.items())
    )
    log.record(
        event_type="policy.published",
        actor=by,
        data={
            "agent": agent.slug,
            "version": policy.version,
            "grants": merged_grants,
            "auto_threshold": policy.auto_threshold,
            "review_threshold": policy.review_threshold,
        },
    )
    return policy


@transaction.atomic
def apikey_issue(*, agent: Agent, by: str, label: str = "") -> IssuedKey:
    raw, prefix, digest = keys.generate()
    key = ApiKey.objects.create(agent=agent, prefix=prefix, digest=digest, label=label)
    log.record(
        event_type="apikey.issued",
        actor=by,
        data={"agent": agent.slug, "prefix": prefix, "label": label},
    )
    return IssuedKey(key=key, raw=raw)


@transaction.atomic
def apikey_revoke(*, key: ApiKey, by: str) -> bool:
    """Revoke a key; False when it was already revoked (nothing changes, nothing is logged)."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        return False
    log.record(
        event_type="apikey.revoked",
        actor=by,
        data={"agent": key.agent.slug, "prefix": key.prefix},
    )
    return True


@transaction.atomic
def agent_register(
    *,
    slug: str,
    by: str,
    name: str = "",
    description: str = "",
    grants: dict[str, int] | None = None,
    **policy_fields: Any,
) -> tuple[Agent, IssuedKey]:
    """Register an agent with its first policy version and its first API key."""
    agent = Agent.objects.create(slug=slug, name=name or slug, description=description)
    log.record(event_type="agent.registered", actor=by, data={"agent": slug})
    policy_publish(agent=agent, grants=grants or {}, by=by, **policy_fields)
    issued = apikey_issue(agent=agent, by=by, label="initial")
    return agent, issued


@transaction.atomic
def agent_set_callback(*, agent: Agent, url: str, by: str) -> str:
    """Register (or clear, with "") where the agent hears about decisions and completions.

    Returns the new HMAC secret for the callbacks' signatures, shown once; "" when cleared.
    """
    import secrets

    secret = secrets.token_hex(32) if url else ""
    Agent.objects.filter(pk=agent.pk).update(callback_url=url, callback_secret=secret)
    log.record(
        event_type="agent.callback_set",
        actor=by,
        actor_type="agent" if by == agent.slug else "user",
        data={"agent": agent.slug, "callback_url": url},
    )
    return secret


@transaction.atomic
def asset_save(*, asset: Asset, by: str) -> Asset:
    """Add or change an inventory entry. Criticality decides the two-person rule, so every
    change is audited with what it was before."""
    before = Asset.objects.filter(pk=asset.pk).values().first() if asset.pk else None
    asset.save()
    log.record(
        event_type="asset.saved",
        actor=by,
        data={
            "kind": asset.kind,
            "identifier": asset.identifier,
            "criticality": asset.criticality,
            "group": asset.group,
            "before": before and {k: before[k] for k in ("identifier", "criticality", "group")},
        },
    )
    return asset


@transaction.atomic
def asset_delete(*, asset: Asset, by: str) -> None:
    log.record(
        event_type="asset.deleted",
        actor=by,
        data={"kind": asset.kind, "identifier": asset.identifier, "criticality": asset.criticality},
    )
    asset.delete()


def callback_address_problem(url: str, *, resolve: bool) -> str | None:
    """Why the console must not POST to this URL, or None.

    A compromised agent must not turn the workers into a proxy into the SOC's own network:
    loopback, private, link-local and other special addresses are refused unless
    CALLBACK_ALLOW_PRIVATE_NETWORKS is on. `resolve` also checks what a name resolves to now
    (at delivery time, so a name cannot be pointed inward after it was registered).
    """
    import ipaddress
    import socket
    from urllib.parse import urlparse

    from django.conf import settings

    if settings.CALLBACK_ALLOW_PRIVATE_NETWORKS:
        return None
    host = urlparse(url).hostname or ""
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return f"{host} is this machine"
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return f"{host} does not resolve"
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global:
            return f"{host} is a private, loopback or reserved address ({address})"
    return None
