"""A policy's versions: what a version says (`PolicyContent`, checked), publishing a live one,
and a candidate's shadow (started, discarded or promoted). Each transition owns its transaction
and audit event."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction

from audit import log
from soc_console.errors import WrongState

from ..demotion import DEFAULT_RULES, DemotionRules, rules_of
from ..models import (
    DEFAULT_AUTO_PER_HOUR,
    DEFAULT_TARGETS_PER_HOUR,
    Agent,
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
