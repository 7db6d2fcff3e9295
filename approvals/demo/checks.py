"""A generated attention check: a flawed card modelled on one of an agent's proposals, put in
the team's queue and caught or missed by whoever is on shift."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from agents import catalogue
from approvals import attention, demo
from approvals.models import CHECKS_AGENT
from audit import events

from .cast import Cast
from .people import RECORDS, STYLES, Tiredness, on_shift
from .rows import Generated

# Who catches an attention check at the start of a shift; from its fourth hour on, each hour
# takes CATCH_FADE of it away, whoever works it: the fatigue report should find that drop.
CATCHES = {"analyst": 0.7, "analyst2": 0.97, "senior": 0.97}
CATCH_FADE = 0.08
# What routing says of a check: it looks like any proposal waiting for an analyst.
ROUTED = "pending: analyst approval required (level 2)"


def attention_check(
    out: Generated, rng: random.Random, cast: Cast, created: datetime, tiredness: Tiredness
) -> None:
    """A check put in the queue at `created`, decided by whoever is on shift: caught or
    missed in their style, less often caught the longer they have worked without a break."""
    slug = rng.choice([s for s in cast.agent_slugs if s != "intern-bot"])
    action = rng.choices(list(RECORDS[slug].actions), list(RECORDS[slug].actions.values()))[0]
    pick = demo.scenario_for(rng, slug, action)
    composed = attention.compose(
        attention.Model(
            agent=slug,
            action=action,
            target=pick.target,
            params=pick.params,
            confidence=round(min(0.95, max(0.55, rng.gauss(*RECORDS[slug].confidence))), 2),
            rationale=pick.rationale,
            evidence=[{"kind": pick.evidence_kind, "ref": f"REF-{rng.randint(100, 999)}"}],
            severity="high",
        ),
        rng,
    )
    pid = uuid.uuid4()
    who = on_shift(created, rng)
    style = STYLES[who]
    expire_after = cast.policies[slug].expire_after_minutes
    at = created + timedelta(seconds=max(5.0, rng.expovariate(1 / (style.wait_minutes * 60))))
    at = min(at, created + timedelta(minutes=expire_after - 1))
    into = tiredness.hours_in(who, at)
    caught = rng.random() < CATCHES[who] - CATCH_FADE * max(0.0, into - 3)
    card = round(min(900.0, rng.lognormvariate(math.log(style.card_median), style.card_sigma)))
    _inserted(out, cast, pid=pid, created=created, shown_agent=slug, composed=composed)
    if caught:
        reason = "The card does not add up."
        out.decisions.append((pid, cast.users[who], "reject", reason, card, at))
        data = events.check_caught(reason=reason, seconds_on_card=card, flaw=composed.flaw.value)
        out.event(at, "user", who, events.REJECTED, pid, data)
    else:
        data = events.check_missed(
            reason="",
            seconds_on_card=card,
            flaw=composed.flaw.value,
            what_is_wrong=composed.explanation,
        )
        out.event(at, "user", who, events.CHECK_MISSED, pid, data)
    out.proposals.append(_proposal_row(cast, pid, slug, composed, caught, created, at))
    out.checks.append(
        (
            pid,
            cast.team.pk,
            composed.flaw.value,
            composed.explanation,
            slug,
            "caught" if caught else "missed",
            cast.users[who],
            card,
            created,
            at,
        )
    )


def _inserted(
    out: Generated,
    cast: Cast,
    *,
    pid: uuid.UUID,
    created: datetime,
    shown_agent: str,
    composed: attention.Composed,
) -> None:
    """The check's arrival in the queue, as the console records it."""
    submission = events.submitted(
        agent=CHECKS_AGENT,
        action=composed.action,
        target=composed.target,
        target_canonical=composed.target.lower(),
        confidence=composed.confidence,
        status="pending",
        policy_version=None,
        asset=None,
        criticality="medium",
        explanation=ROUTED,
    )
    inserted = events.check_inserted(
        submission,
        team=cast.team.name,
        shown_agent=shown_agent,
        flaw=composed.flaw.value,
        what_is_wrong=composed.explanation,
        modelled_on=None,
    )
    out.event(created, "system", "system", events.CHECK_INSERTED, pid, inserted)


def _proposal_row(
    cast: Cast,
    pid: uuid.UUID,
    slug: str,
    composed: attention.Composed,
    caught: bool,
    created: datetime,
    decided: datetime,
) -> tuple[Any, ...]:
    """The check as a proposal of the checks agent (PROPOSAL_COLUMNS): rejected when caught,
    withdrawn when missed."""
    escalate_at, expires_at = cast.policies[slug].deadlines(created)
    return (
        pid,
        cast.checks_agent.pk,
        composed.action,
        composed.target,
        composed.target.lower(),
        json.dumps(composed.params),
        composed.confidence,
        composed.rationale,
        json.dumps(composed.evidence),
        composed.severity,
        "rejected" if caught else "withdrawn",
        "",
        ROUTED,
        1,
        0,
        None,
        None,
        None,  # no shadow judges the console's own checks
        None,
        "",
        "",
        "",
        "medium",
        catalogue.ACTIONS[composed.action].risk,
        0.0,
        "history",
        created,
        decided,
        escalate_at,
        None,
        expires_at,
        True,
    )
