"""One proposal's generated story: routed by the real routing function, decided by an analyst
of the hour in that analyst's style, executed with its timings, and the audit events of each
step built by the same builders as the services' (audit/events.py)."""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from agents import catalogue
from agents.models import Policy
from agents.routing import RoutingInput, RoutingOutcome, route
from approvals import demo
from audit import events

from .cast import Cast
from .checks import attention_check
from .executions import execution
from .people import CRITICALITY, RECORDS, STYLES, Tiredness, on_shift
from .rows import Generated


@dataclass
class Story:
    """One proposal as it is drawn, and what has happened to it so far."""

    pid: uuid.UUID
    slug: str
    action: str
    kind: catalogue.ActionType
    pick: demo.Scenario
    confidence: float
    criticality: str
    policy: Policy
    routed: RoutingOutcome
    shadow: Policy | None
    shadowed: RoutingOutcome | None
    status: str
    good: bool  # the proposal was right to make
    escalate_at: datetime | None = None
    expires_at: datetime | None = None
    execution: uuid.UUID | None = None
    decided_at: datetime | None = None
    escalated_at: datetime | None = None
    executed_at: datetime | None = None
    approvals: int = 0
    decisions: int = 0


class Generator:
    """Turns a stream of arrival times into consistent rows and audit events."""

    def __init__(
        self, rng: random.Random, *, compact_events: bool = False, until: datetime | None = None
    ) -> None:
        self.rng = rng
        # The end of the history: nothing in it happens at or after this moment (a proposal
        # drawn shortly before it may still wait, half approved, or not yet be rolled back).
        self.until = until
        # The benchmark keeps one event per state change that the reports read, not every
        # intermediate step, so that a million decisions stays a few million events.
        self.compact = compact_events
        self.cast = Cast.load()
        self.since_check = 0  # decisions by the team's members since its last check
        self.tiredness = Tiredness()

    def proposal(self, out: Generated, created: datetime) -> int:
        """One proposal and everything that followed it; returns the decisions made."""
        story = self._draw(created)
        self._submitted(out, story, created)
        if story.status == "auto_approved":
            story.decided_at = created
            story.executed_at = created
        elif story.status == "pending":
            self._review(out, story, created)
        out.proposals.append(self._row(story, created))
        if story.executed_at is not None and story.execution is not None:
            execution(
                out,
                self.rng,
                pid=story.pid,
                eid=story.execution,
                reversible=story.kind.reversible,
                at=story.executed_at,
                good=story.good,
                failure_rate=RECORDS[story.slug].failure_rate,
                compact=self.compact,
                until=self.until,
            )
        team = self.cast.team
        if team is not None and self.since_check >= team.check_every:
            self.since_check = 0
            checked_at = (story.decided_at or created) + timedelta(minutes=1)
            if self._ended(checked_at):
                return story.decisions  # the next proposal's turn inserts it
            attention_check(out, self.rng, self.cast, checked_at, self.tiredness)
        return story.decisions

    def _draw(self, created: datetime) -> Story:
        """Which agent proposes what, how sure it is, and how the live policy (and the one in
        shadow, if it had started by then) routes it."""
        rng = self.rng
        slug = rng.choices(self.cast.agent_slugs, self.cast.agent_weights)[0]
        record = RECORDS[slug]
        policy = self.cast.policies[slug]
        action = rng.choices(list(record.actions), list(record.actions.values()))[0]
        kind = catalogue.get(action)
        if kind is None:
            raise RuntimeError(f"{action} is not in the action catalogue")
        pick = demo.scenario_for(rng, slug, action)
        confidence = round(min(0.99, max(0.3, rng.gauss(*record.confidence))), 2)
        criticality = rng.choices([c for c, _ in CRITICALITY], [w for _, w in CRITICALITY])[0]
        given = RoutingInput(
            level=self.cast.levels[slug].get(action, 0),
            confidence=confidence,
            auto_threshold=policy.auto_threshold,
            review_threshold=policy.review_threshold,
            reversible=kind.reversible,
            criticality=criticality,
            in_scope=True,
            connector_allowed=True,
            evidence_complete=True,
            emergency_stop=False,
            suspended=False,
        )
        routed = route(given)
        shadow, shadowed = self._shadowed(given, slug, action, created)
        story = Story(
            uuid.uuid4(),
            slug,
            action,
            kind,
            pick,
            confidence,
            criticality,
            policy,
            routed,
            shadow,
            shadowed,
            status=routed.outcome.value,
            good=rng.random() < record.good_at(confidence),
        )
        if story.status == "pending":
            story.escalate_at, story.expires_at = policy.deadlines(created)
        if story.status == "auto_approved":
            story.execution = uuid.uuid4()
        return story

    def _shadowed(
        self, given: RoutingInput, slug: str, action: str, created: datetime
    ) -> tuple[Policy | None, RoutingOutcome | None]:
        """The agent's policy in shadow, if it had started by then, and how it routes."""
        shadow = self.cast.shadows.get(slug)
        if shadow is None or created < shadow.created_at:
            return None, None
        shadowed = route(
            replace(
                given,
                level=self.cast.shadow_levels[slug].get(action, 0),
                auto_threshold=shadow.auto_threshold,
                review_threshold=shadow.review_threshold,
            )
        )
        return shadow, shadowed

    def _submitted(self, out: Generated, story: Story, created: datetime) -> None:
        shadow, shadowed = story.shadow, story.shadowed
        submission = events.submitted(
            agent=story.slug,
            action=story.action,
            target=story.pick.target,
            target_canonical=story.pick.target,  # the demo's targets are written canonically
            confidence=story.confidence,
            status=story.status,
            policy_version=story.policy.version,
            asset=None,
            criticality=story.criticality,
            explanation=story.routed.explanation[:300],
            execution=story.execution,
            shadow=events.shadow_judgement(
                version=shadow.version,
                outcome=shadowed.outcome.value,
                code=shadowed.code.value if shadowed.code else "",
                explanation=shadowed.explanation[:300],
            )
            if shadow is not None and shadowed is not None
            else None,
        )
        out.event(created, "agent", story.slug, events.SUBMITTED, story.pid, submission)

    def _review(self, out: Generated, story: Story, created: datetime) -> None:
        """A pending proposal in the queue: expired unanswered, or decided by whoever is on
        shift (with a senior analyst for a two-person approval), escalated on the way when
        it waited past its policy's time."""
        rng = self.rng
        who = on_shift(created, rng)
        wait = rng.expovariate(1 / (STYLES[who].wait_minutes * 60))
        if who == "senior" and rng.random() < 0.03:
            wait = story.policy.expire_after_minutes * 60 + 1  # lost in the night's backlog
        first_at = created + timedelta(seconds=max(5.0, wait))
        if self._ended(min(first_at, story.expires_at or first_at)):
            # Still waiting when the history ends: escalated by then if its time had come.
            if story.escalate_at and not self._ended(story.escalate_at):
                self._escalated(out, story)
            return
        if story.expires_at and first_at >= story.expires_at:
            if story.escalate_at:
                self._escalated(out, story)
            story.status = "expired"
            story.decided_at = story.expires_at
            expiry = events.expiry(expires_at=story.expires_at, approvals=0)
            out.event(story.expires_at, "system", "system", events.EXPIRED, story.pid, expiry)
            return
        if story.escalate_at and first_at > story.escalate_at:
            self._escalated(out, story)
        deciders = [who]
        if story.routed.required_approvals == 2:
            deciders = [who if who != "senior" else "analyst2", "senior"]
        at = first_at
        for index, name in enumerate(deciders):
            if self._ended(at):
                break  # the second approver had not come when the history ends
            if self._decide(out, story, name, at, final=index == len(deciders) - 1):
                break
            at = at + timedelta(seconds=rng.expovariate(1 / 600) + 30)

    def _decide(
        self, out: Generated, story: Story, name: str, at: datetime, *, final: bool
    ) -> bool:
        """One analyst's verdict, in that analyst's style and as tired as the shift has made
        them; True when it took the proposal out of pending."""
        style = STYLES[name]
        into = self.tiredness.hours_in(name, at)
        median = style.card_median * (style.fatigue**into)
        card = round(min(900.0, self.rng.lognormvariate(math.log(median), style.card_sigma)), 1)
        tired = 1 - style.fatigue**into  # careless approvals rise the longer they work
        approve = story.good or self.rng.random() < style.approve_anyway + 0.5 * tired
        verdict = "approve" if approve else "reject"
        reason = "" if approve else "Evidence does not support this action."
        out.decisions.append((story.pid, self.cast.users[name], verdict, reason, card, at))
        story.decisions += 1
        self.since_check += name in self.cast.members
        if not approve:
            story.status = "rejected"
            story.decided_at = at
            data = events.rejection(reason=reason, seconds_on_card=card)
            out.event(at, "user", name, events.REJECTED, story.pid, data)
            return True
        story.approvals += 1
        if final:
            story.status = "approved"
            story.decided_at = at
            story.executed_at = at
            story.execution = uuid.uuid4()
        data = events.approval(
            reason=reason,
            approvals=story.approvals,
            required_approvals=story.routed.required_approvals,
            seconds_on_card=card,
            execution=story.execution,
        )
        kind = events.APPROVED if final else events.APPROVAL_RECORDED
        out.event(at, "user", name, kind, story.pid, data)
        return final

    def _ended(self, at: datetime) -> bool:
        """Whether `at` lies at or after the end of the history: what would happen then has
        not happened."""
        return self.until is not None and at >= self.until

    def _escalated(self, out: Generated, story: Story) -> None:
        at = story.escalate_at
        story.escalated_at = at
        data = events.escalation(escalate_at=at, approvals=0)
        out.event(at, "system", "system", events.ESCALATED, story.pid, data)

    def _row(self, story: Story, created: datetime) -> tuple[Any, ...]:
        """The proposal as PROPOSAL_COLUMNS lists it."""
        pick, routed, shadow, shadowed = story.pick, story.routed, story.shadow, story.shadowed
        evidence = [{"kind": pick.evidence_kind, "ref": f"REF-{self.rng.randint(100, 999)}"}]
        return (
            story.pid,
            self.cast.agents[story.slug].pk,
            story.action,
            pick.target,
            pick.target,  # the demo's targets are written canonically
            json.dumps(pick.params),
            story.confidence,
            pick.rationale,
            json.dumps(evidence),
            "high",
            story.status,
            "",
            routed.explanation[:300],
            routed.required_approvals,
            story.approvals,
            story.policy.pk,
            story.policy.version,
            shadow.pk if shadow else None,
            shadow.version if shadow else None,
            shadowed.outcome.value if shadowed else "",
            shadowed.code.value if shadowed and shadowed.code else "",
            shadowed.explanation[:300] if shadowed else "",
            story.criticality,
            story.kind.risk,
            0.0,
            "history",
            created,
            story.decided_at,
            story.escalate_at,
            story.escalated_at,
            story.expires_at,
            False,
        )
