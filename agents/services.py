"""State changes for agents, keys and policies. Each owns its transaction and audit event."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import log
from soc_console.errors import WrongState

from . import keys, targets
from .demotion import DEFAULT_RULES, DemotionRules, rules_of
from .models import (
    DEFAULT_AUTO_PER_HOUR,
    DEFAULT_TARGETS_PER_HOUR,
    Agent,
    ApiKey,
    Asset,
    AssetAlias,
    Grant,
    Level,
    Policy,
    PolicyState,
)

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
    "max_pending",
    "max_proposals_per_minute",
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
        if not isinstance(level, int) or level not in Level.values:
            raise PolicyError(f"grant {action}={level}: the level must be one of {Level.values}")
    for name in ("max_pending", "max_proposals_per_minute"):
        value = fields.get(name, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PolicyError(f"{name} must be a whole number of at least 1, not {value!r}")


def _check_budgets(budgets: dict[str, tuple[int, int]], grants: dict[str, int]) -> None:
    for action, budget in budgets.items():
        if action not in grants:
            raise PolicyError(f"budget for {action}: the policy grants no such action")
        runs, targets = budget
        for value in budget:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PolicyError(
                    f"budget {action}={runs}/{targets}: each part must be a whole number >= 0"
                )


_RULE_FIELDS = {f.name for f in dataclasses.fields(DemotionRules)}


def _merge_demotions(
    demotions: dict[str, dict[str, Any]],
    current: dict[str, DemotionRules],
    grants: dict[str, int],
) -> dict[str, DemotionRules]:
    """Each grant's demotion rules: the ones given over the previous version's (or defaults)."""
    merged = dict(current)
    for action, given in demotions.items():
        if action not in grants:
            raise PolicyError(f"demotion rules for {action}: the policy grants no such action")
        unknown = set(given) - _RULE_FIELDS
        if unknown:
            raise PolicyError(f"demotion rules for {action}: unknown {', '.join(sorted(unknown))}")
        rules = replace(current.get(action, DEFAULT_RULES), **given)
        for name in ("to_level", "failure_window", "failure_percent"):
            value = getattr(rules, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PolicyError(f"demotion rules for {action}: {name} must be a whole number")
        if not all(isinstance(v, bool) for v in (rules.over_confidence, rules.automatic_rollback)):
            raise PolicyError(f"demotion rules for {action}: each switch is on or off")
        if rules.to_level not in Level.values:
            raise PolicyError(
                f"demotion rules for {action}: to_level must be one of {Level.values}"
            )
        if rules.failure_percent > 100:
            raise PolicyError(f"demotion rules for {action}: failure_percent is at most 100")
        merged[action] = rules
    return merged


@dataclass(frozen=True)
class PolicyContent:
    """What a policy version says, whatever its state: its fields, grants, budgets and each
    grant's demotion rules."""

    fields: dict[str, Any]
    grants: dict[str, int]
    budgets: dict[str, tuple[int, int]]
    rules: dict[str, DemotionRules] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: Policy | None) -> PolicyContent:
        if policy is None:
            return cls({}, {}, {})
        grants = list(policy.grants.all())
        return cls(
            {name: getattr(policy, name) for name in POLICY_FIELDS},
            {g.action: g.level for g in grants},
            {g.action: (g.max_auto_per_hour, g.max_targets_per_hour) for g in grants},
            {g.action: rules_of(g) for g in grants},
        )

    def changed(
        self,
        *,
        fields: dict[str, Any],
        grants: dict[str, int] | None,
        budgets: dict[str, tuple[int, int]] | None,
        demotions: dict[str, dict[str, Any]] | None = None,
    ) -> PolicyContent:
        """This content with the given parts replaced, checked."""
        unknown = set(fields) - set(POLICY_FIELDS)
        if unknown:
            raise PolicyError(f"unknown policy fields: {', '.join(sorted(unknown))}")
        merged = {**self.fields, **fields}
        merged_grants = {**self.grants, **(grants or {})}
        _check_policy(merged, merged_grants)
        _check_budgets(budgets or {}, merged_grants)
        return PolicyContent(
            merged,
            merged_grants,
            {**self.budgets, **(budgets or {})},
            _merge_demotions(demotions or {}, self.rules, merged_grants),
        )

    def budget(self, action: str) -> tuple[int, int]:
        return self.budgets.get(action, (DEFAULT_AUTO_PER_HOUR, DEFAULT_TARGETS_PER_HOUR))

    def rule(self, action: str) -> DemotionRules:
        return self.rules.get(action, DEFAULT_RULES)

    def event_data(self, policy: Policy) -> dict[str, Any]:
        """The version as its audit event records it."""
        return {
            "agent": policy.agent.slug,
            "version": policy.version,
            "grants": self.grants,
            "auto_threshold": policy.auto_threshold,
            "review_threshold": policy.review_threshold,
            "max_pending": policy.max_pending,
            "max_proposals_per_minute": policy.max_proposals_per_minute,
            "budgets": {action: list(self.budget(action)) for action in sorted(self.grants)},
            "demotion_rules": {
                action: self.rule(action).as_dict() for action in sorted(self.grants)
            },
        }


def _create_version(agent: Agent, content: PolicyContent, *, state: str, by: str) -> Policy:
    """A new version of the agent's policy, numbered after every version it has (live, shadow
    or discarded), so that a version published later always carries a higher number. The
    caller holds the agent's row lock."""
    newest = agent.policies.order_by("-version").values_list("version", flat=True).first()
    policy = Policy.objects.create(
        agent=agent, version=(newest or 0) + 1, state=state, created_by=by, **content.fields
    )
    Grant.objects.bulk_create(
        Grant(
            policy=policy,
            action=action,
            level=level,
            max_auto_per_hour=content.budget(action)[0],
            max_targets_per_hour=content.budget(action)[1],
            **content.rule(action).grant_fields(),
        )
        for action, level in sorted(content.grants.items())
    )
    return policy


@transaction.atomic
def policy_publish(
    *,
    agent: Agent,
    grants: dict[str, int] | None = None,
    budgets: dict[str, tuple[int, int]] | None = None,
    demotions: dict[str, dict[str, Any]] | None = None,
    by: str,
    actor_type: str = "user",
    **fields: Any,
) -> Policy:
    """Publish a new live version; unspecified parts carry over from the live one.

    `budgets` gives grants their blast-radius budget, ACTION: (automatic executions per hour,
    distinct targets per hour); a grant without one keeps its previous budget, or the default.
    `demotions` gives grants demotion rules, ACTION: {DemotionRules field: value}; what is not
    given carries over likewise. A shadow version in place stays in shadow.
    """
    Agent.objects.select_for_update().get(pk=agent.pk)
    content = PolicyContent.of(agent.policies.live().first()).changed(
        fields=fields, grants=grants, budgets=budgets, demotions=demotions
    )
    policy = _create_version(agent, content, state=PolicyState.LIVE, by=by)
    log.record(
        event_type="policy.published",
        actor=by,
        actor_type=actor_type,
        data=content.event_data(policy),
    )
    return policy


@transaction.atomic
def policy_shadow_start(
    *,
    agent: Agent,
    grants: dict[str, int] | None = None,
    budgets: dict[str, tuple[int, int]] | None = None,
    by: str,
    **fields: Any,
) -> Policy:
    """Put a candidate version in shadow: it judges every proposal beside the live policy,
    which alone decides. Unspecified parts are the live version's. One shadow per agent."""
    Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.policies.shadow().exists():
        raise WrongState(
            f"{agent.slug} already has a policy in shadow: promote or discard it first.",
            code="shadow_exists",
        )
    live = agent.policies.live().first()
    content = PolicyContent.of(live).changed(fields=fields, grants=grants, budgets=budgets)
    policy = _create_version(agent, content, state=PolicyState.SHADOW, by=by)
    log.record(
        event_type="policy.shadow_started",
        actor=by,
        data={**content.event_data(policy), "live_version": live.version if live else None},
    )
    return policy


def _locked_shadow(agent: Agent, version: int) -> Policy:
    """The agent's shadow version, under the agent's row lock; a 409 when it is not (or no
    longer) in shadow."""
    Agent.objects.select_for_update().get(pk=agent.pk)
    policy = agent.policies.filter(version=version).first()
    if policy is None:
        raise WrongState(f"{agent.slug} has no policy version {version}.", code="no_shadow")
    if policy.state != PolicyState.SHADOW:
        raise WrongState(
            f"Version {version} of {agent.slug} is no longer in shadow: it was "
            f"{policy.get_state_display()}.",
            code="no_shadow",
        )
    return policy


@transaction.atomic
def policy_shadow_discard(*, agent: Agent, version: int, by: str, reason: str = "") -> Policy:
    """End a shadow without changing the live policy."""
    policy = _locked_shadow(agent, version)
    Policy.objects.filter(pk=policy.pk).update(state=PolicyState.DISCARDED)
    policy.state = PolicyState.DISCARDED
    log.record(
        event_type="policy.shadow_discarded",
        actor=by,
        data={"agent": agent.slug, "shadow_version": version, "reason": reason},
    )
    return policy


@transaction.atomic
def policy_shadow_promote(
    *, agent: Agent, version: int, by: str, evidence: dict[str, Any]
) -> Policy:
    """Make the shadow's content live: a new live version that copies it (numbered after any
    live version published meanwhile, by a demotion say, so that none is overtaken by an older
    number), and the shadow marked promoted. `evidence` is the score it was promoted on, kept
    in the audit event. The console calls this through approvals.services.shadow_promote, which
    checks the sample first."""
    shadow = _locked_shadow(agent, version)
    content = PolicyContent.of(shadow)
    live = agent.policies.live().first()
    policy = _create_version(agent, content, state=PolicyState.LIVE, by=by)
    Policy.objects.filter(pk=shadow.pk).update(state=PolicyState.PROMOTED)
    log.record(
        event_type="policy.promoted",
        actor=by,
        data={
            **content.event_data(policy),
            "shadow_version": version,
            "replaced_version": live.version if live else None,
            "evidence": evidence,
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
    budgets: dict[str, tuple[int, int]] | None = None,
    demotions: dict[str, dict[str, Any]] | None = None,
    **policy_fields: Any,
) -> tuple[Agent, IssuedKey]:
    """Register an agent with its first policy version and its first API key."""
    agent = Agent.objects.create(slug=slug, name=name or slug, description=description)
    log.record(event_type="agent.registered", actor=by, data={"agent": slug})
    policy_publish(
        agent=agent,
        grants=grants or {},
        budgets=budgets,
        demotions=demotions,
        by=by,
        **policy_fields,
    )
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


class AssetError(ValueError):
    """An inventory entry that cannot be saved; `field` says which of its parts is wrong."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def asset_names(
    *, kind: str, identifier: str, aliases: Iterable[str] = ()
) -> list[targets.Identity]:
    """The canonical identities of an asset's identifier (first) and its other names."""
    try:
        names = [targets.of_asset(kind, identifier)]
    except targets.TargetError as exc:
        raise AssetError(f"The identifier {exc}.", field="identifier") from exc
    for alias in aliases:
        try:
            identity = targets.of_asset(kind, alias, alias=True)
        except targets.TargetError as exc:
            raise AssetError(f"The alias {alias!r} {exc}.", field="aliases") from exc
        if all((identity.namespace, identity.value) != (n.namespace, n.value) for n in names):
            names.append(identity)
    return names


@transaction.atomic
def asset_save(*, asset: Asset, by: str, aliases: Iterable[str] | None = None) -> Asset:
    """Add or change an inventory entry and the other names it is known by (None keeps them).

    Names are stored canonical, so that every spelling of a target finds them. Criticality
    decides the two-person rule, so every change is audited with what it was before.
    """
    before = None
    before_aliases: list[str] = []
    if asset.pk:
        before = Asset.objects.filter(pk=asset.pk).values().first()
        before_aliases = list(
            AssetAlias.objects.filter(asset_id=asset.pk, primary=False).values_list(
                "value", flat=True
            )
        )
    names = asset_names(
        kind=asset.kind,
        identifier=asset.identifier,
        aliases=before_aliases if aliases is None else aliases,
    )
    asset.identifier = names[0].value
    asset.save()
    AssetAlias.objects.filter(asset=asset).delete()
    AssetAlias.objects.bulk_create(
        AssetAlias(asset=asset, primary=n == 0, **targets.alias_columns(identity))
        for n, identity in enumerate(names)
    )
    log.record(
        event_type="asset.saved",
        actor=by,
        data={
            "kind": asset.kind,
            "identifier": asset.identifier,
            "aliases": [identity.value for identity in names[1:]],
            "criticality": asset.criticality,
            "group": asset.group,
            "before": before
            and {
                **{k: before[k] for k in ("identifier", "criticality", "group")},
                "aliases": before_aliases,
            },
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


# Names that are this machine whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def callback_address_problem(url: str, *, resolve: bool) -> str | None:
    """Why the console must not POST to this URL, or None.

    A compromised agent must not turn the workers into a proxy into the SOC's own network:
    loopback, private, link-local and other special addresses are refused unless
    CALLBACK_ALLOW_PRIVATE_NETWORKS is on. The host is read by the same canonicaliser as
    targets, so `2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]` and `localhost.` are
    the loopback addresses they are. `resolve` also checks what a name resolves to now (at
    delivery time, so a name cannot be pointed inward after it was registered).
    """
    if settings.CALLBACK_ALLOW_PRIVATE_NETWORKS:
        return None
    try:
        # Parsed as the client that sends the callback parses it; the host as it goes on the
        # wire (an internationalised name as its A-labels).
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the URL cannot be parsed"
    if not host:
        return "the URL names no host"
    try:
        identity = targets.canonical("host", host, domains={})
    except targets.TargetError:
        return f"{host} is not a valid host name"
    if identity.namespace is targets.Namespace.HOST:
        name = identity.key
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            return f"{host} is this machine"
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(identity.value, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return f"{host} does not resolve"
        addresses = [targets.canonical("ip", str(info[4][0])).address for info in infos]
    else:
        addresses = [identity.address]
    for address in addresses:
        if address is None or not address.is_global:
            return f"{host} is a private, loopback or reserved address ({address or host})"
    return None
