"""Attention checks: put one in the queue at a team's rate, and settle it when it leaves.

A check is a pending proposal like any other on the card, owned by the console's checks agent
(CHECKS_AGENT: no key, no policy, no callback) and marked `synthetic`. Its ways out:

- rejected by an analyst: caught (proposal_reject, an ordinary rejection);
- approved by an analyst: missed. It is never approved: proposal_approve hands it to
  check_missed, which closes it as withdrawn by the console, and the analyst is told what the
  card got wrong. No execution is created; the claim would refuse one anyway;
- expired unanswered: neither caught nor missed.

The rate: a team with checks on gets one check after every `check_every` decisions its members
give on real proposals, counted since its last check. At most one check is open in the queue at
a time, whichever team it was made for, so an analyst in several teams never faces two at once;
the queue is shared, so a check counts for whoever decides it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from agents import catalogue
from agents.models import Agent, Criticality
from audit import events, log

from .. import attention
from ..models import (
    CHECKS_AGENT,
    AttentionCheck,
    CheckFlaw,
    CheckOutcome,
    Decision,
    Proposal,
    ProposalStatus,
    Team,
)
from ..priority import placed
from .pending import finish_pending
from .shared import SYSTEM, publish_committed, username
from .submission import submitted_data

# A check is modelled on one of the latest proposals sent to analysts within this window.
MODEL_WINDOW = timedelta(days=1)
MODEL_CHOICES = 50
# Deadlines of a check whose model had no policy (none of the demo's or an agent's has none).
DEFAULT_ESCALATE = timedelta(minutes=15)
DEFAULT_EXPIRE = timedelta(minutes=240)


def attention_checks_insert(
    *, now: datetime | None = None, rng: random.Random | None = None
) -> int:
    """Beat's pass: insert a check for the first team that is due one, unless one is open."""
    now = now or timezone.now()
    if AttentionCheck.objects.filter(outcome=CheckOutcome.OPEN).exists():
        return 0
    for team in Team.objects.filter(attention_checks=True).order_by("pk"):
        if decisions_since_last_check(team) >= team.check_every:
            return int(attention_check_insert(team=team, now=now, rng=rng) is not None)
    return 0


def decisions_since_last_check(team: Team) -> int:
    """Decisions the team's members gave on real proposals since the team's last check."""
    last = (
        AttentionCheck.objects.filter(team=team)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return Decision.objects.filter(
        analyst__in=team.members.all(),
        created_at__gt=last or team.created_at,
        proposal__synthetic=False,
    ).count()


def _model(now: datetime) -> Proposal | None:
    """A recent real proposal analysts decided with one approval or a rejection: the check
    copies its agent, action, confidence and wording, so that it reads like the queue's other
    cards. A decided one, so that the check does not join its model's card as a duplicate."""
    recent = list(
        Proposal.objects.filter(
            synthetic=False,
            created_at__gte=now - MODEL_WINDOW,
            status__in=(ProposalStatus.APPROVED, ProposalStatus.REJECTED),
            required_approvals=1,
            agent__suspended=False,
        )
        .exclude(criticality=Criticality.CRITICAL)
        .select_related("agent", "policy")
        .order_by("-created_at")[:MODEL_CHOICES]
    )
    return random.choice(recent) if recent else None  # noqa: S311 not a secret


def _open_on(action: str, target: str) -> bool:
    return Proposal.objects.filter(
        status=ProposalStatus.PENDING, action=action, target_canonical=target
    ).exists()


@transaction.atomic
def attention_check_insert(
    *,
    team: Team | None,
    now: datetime | None = None,
    rng: random.Random | None = None,
    flaw: CheckFlaw | None = None,
    model: Proposal | None = None,
) -> Proposal | None:
    """Put one check in the queue, modelled on `model` (or a recent real proposal); None when
    there is nothing to model it on."""
    now = now or timezone.now()
    rng = rng or random.Random()  # noqa: S311 not a secret
    model = model or _model(now)
    if model is None:
        return None
    composed = _compose(model, rng, flaw)
    owner, _ = Agent.objects.get_or_create(
        slug=CHECKS_AGENT,
        defaults={
            "name": "Attention checks",
            "description": "The console's own synthetic proposals; never executed.",
        },
    )
    proposal = _check_proposal(model, composed, owner=owner, now=now)
    proposal.save(force_insert=True)
    check = AttentionCheck.objects.create(
        proposal=proposal,
        team=team,
        flaw=composed.flaw,
        explanation=composed.explanation,
        shown_agent=composed.agent,
        created_at=now,
    )
    proposal.attention_check = check  # the card names the shown agent without a query
    log.record(
        event_type=events.CHECK_INSERTED,
        actor=SYSTEM,
        actor_type="system",
        proposal_id=proposal.id,
        data=_inserted_data(proposal, composed, team=team, model=model),
    )
    publish_committed(proposal)
    return proposal


def _compose(model: Proposal, rng: random.Random, flaw: CheckFlaw | None) -> attention.Composed:
    """The check's card: the model's, with one flaw put in."""
    shape = attention.Model.of(model)
    composed = attention.compose(shape, rng, flaw)
    if composed.target == model.target and _open_on(model.action, model.target_canonical):
        # Same action on a target with a card open: it would be folded into that card's
        # duplicate group instead of standing alone. A target of another kind stands alone.
        composed = attention.compose(shape, rng, CheckFlaw.WRONG_KIND)
    return composed


def _check_proposal(
    model: Proposal, composed: attention.Composed, *, owner: Agent, now: datetime
) -> Proposal:
    """The check's pending proposal, unsaved: the composed card, with the model's asset (when
    the target is the model's), criticality, routing and deadlines."""
    policy = model.policy
    kind = catalogue.ACTIONS[composed.action]
    same_target = composed.target == model.target
    escalate_at, expires_at = (
        policy.deadlines(now) if policy else (now + DEFAULT_ESCALATE, now + DEFAULT_EXPIRE)
    )
    return Proposal(
        agent=owner,
        **composed.card(),
        target_canonical=model.target_canonical if same_target else composed.target.lower(),
        status=ProposalStatus.PENDING,
        routing_explanation=model.routing_explanation,
        required_approvals=1,
        asset=model.asset if same_target else None,
        **placed(
            risk=kind.risk,
            criticality=model.criticality,
            confidence=composed.confidence,
            created_at=now,
        ),
        escalate_at=escalate_at,
        expires_at=expires_at,
        synthetic=True,
    )


def _inserted_data(
    proposal: Proposal, composed: attention.Composed, *, team: Team | None, model: Proposal
) -> dict[str, Any]:
    """The check's audit event: what any submission records, and what makes it a check."""
    return events.check_inserted(
        submitted_data(proposal),
        team=team.name if team else None,
        shown_agent=composed.agent,
        flaw=composed.flaw.value,
        what_is_wrong=composed.explanation,
        modelled_on=model.pk,
    )


def _settle(proposal: Proposal, outcome: CheckOutcome, **changes: Any) -> AttentionCheck | None:
    """Open → `outcome`, a compare-and-set: a check ends once (its proposal's lock, held by the
    caller, orders the ways it can end)."""
    AttentionCheck.objects.filter(proposal=proposal, outcome=CheckOutcome.OPEN).update(
        outcome=outcome, **changes
    )
    return AttentionCheck.objects.filter(proposal=proposal, outcome=outcome).first()


def check_caught(
    proposal: Proposal,
    analyst: AbstractBaseUser,
    *,
    seconds_on_card: float | None,
    now: datetime,
) -> str | None:
    """A rejected check: caught. Called by proposal_reject inside its transaction; returns the
    check's flaw, which its rejection event records."""
    check = _settle(
        proposal,
        CheckOutcome.CAUGHT,
        analyst=analyst,
        seconds_on_card=seconds_on_card,
        decided_at=now,
    )
    return check.flaw if check else None


def check_missed(
    proposal: Proposal,
    analyst: AbstractBaseUser,
    *,
    reason: str,
    seconds_on_card: float | None,
) -> str:
    """An approved check: missed. It is closed as withdrawn by the console, with no execution
    and no decision of approval (nothing was approved), and one audit event that records the
    analyst's verdict. Returns what the analyst is told."""
    now = timezone.now()
    check = _settle(
        proposal,
        CheckOutcome.MISSED,
        analyst=analyst,
        seconds_on_card=seconds_on_card,
        decided_at=now,
    )
    explanation = check.explanation if check else "The card was an attention check."
    finish_pending(
        proposal,
        to=ProposalStatus.WITHDRAWN,
        event_type=events.CHECK_MISSED,
        actor=username(analyst),
        actor_type="user",
        data=events.check_missed(
            reason=reason,
            seconds_on_card=seconds_on_card,
            flaw=check.flaw if check else None,
            what_is_wrong=explanation,
        ),
    )
    return attention.stopped_text(explanation)


def check_expired(proposal: Proposal) -> None:
    """An unanswered check: neither caught nor missed. Called by proposal_expire once the
    proposal is expired, in its transaction."""
    _settle(proposal, CheckOutcome.EXPIRED)


def team_recorded(*, team: Team, by: AbstractBaseUser, created: bool) -> None:
    """Put a team's settings on record, as saved (the admin saves the row and its members in
    one transaction; this event joins it)."""
    log.record(
        event_type="team.created" if created else "team.changed",
        actor=username(by),
        data={
            "team": team.name,
            "members": sorted(team.members.values_list("username", flat=True)),
            "attention_checks": team.attention_checks,
            "check_every": team.check_every,
        },
    )
