"""Ending a shadow policy by promotion: its score decides whether it may be promoted, and is
kept as the evidence in the audit event. (Starting and discarding a shadow change only the
policy: agents.services.policy_shadow_start and policy_shadow_discard.)"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import Agent, Policy
from agents.services import policy_shadow_promote
from soc_console.errors import WrongState

from ..selectors.shadow import Proportion, ShadowScore, shadow_score


def _figures(proportion: Proportion) -> dict[str, Any]:
    interval = proportion.interval
    return {
        "count": proportion.count,
        "of": proportion.of,
        "wilson95": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
    }


def score_evidence(score: ShadowScore) -> dict[str, Any]:
    """The score as the promotion's audit event records it."""
    overall = score.overall
    net = overall.net_minutes
    return {
        "judged": overall.judged,
        "scored": overall.settled,
        "agreement": _figures(overall.agreement),
        "harm_avoided": _figures(overall.harm_avoided),
        "extra_load": _figures(overall.extra_load),
        "would_block": _figures(overall.would_block),
        "net_analyst_minutes": None if net is None else round(net, 1),
    }


@transaction.atomic
def shadow_promote(*, agent: Agent, version: int, by: str) -> Policy:
    """Promote the agent's shadow version once its sample reaches SHADOW_MIN_SAMPLE: its
    content becomes a new live version (audited, with the score it was promoted on)."""
    shadow = agent.policies.shadow().filter(version=version).first()
    if shadow is None:
        raise WrongState(
            f"Version {version} of {agent.slug} is not in shadow (promoted or discarded already?).",
            code="no_shadow",
        )
    score = shadow_score(shadow, worst=0)
    if not score.ready:
        raise WrongState(
            f"Version {version} has {score.overall.settled} scored proposals; promotion needs "
            f"at least {score.min_sample}.",
            code="sample_too_small",
        )
    # The state is checked again under the agent's lock: a concurrent promotion or discard
    # that got there first is answered with a 409.
    return policy_shadow_promote(
        agent=agent, version=version, by=by, evidence=score_evidence(score)
    )
