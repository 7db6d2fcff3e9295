"""One proposal's generated story: routed by the real routing function, decided by an analyst
of the hour in that analyst's style, executed with its timings, and the audit events of each
step built by the same builders as the services' (audit/events.py)."""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User

from agents import catalogue
from agents.models import Agent, Policy
from agents.routing import RoutingInput, route
from approvals import attention, demo
from approvals.models import CHECKS_AGENT, Team
from audit import events
from audit.log import PendingEvent

from .people import CRITICALITY, RECORDS, STYLES, hours_into_shift, on_shift


@dataclass
class Generated:
    proposals: list[tuple[Any, ...]] = field(default_factory=list)
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    executions: list[tuple[Any, ...]] = field(default_factory=list)
    checks: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[datetime, int, PendingEvent]] = field(default_factory=list)


PROPOSAL_COLUMNS = (
    "id",
    "agent_id",
    "action",
    "target",
    "target_canonical",
    "params",
    "confidence",
    "rationale",
    "evidence",
    "severity",
    "status",
    "block_code",
    "routing_explanation",
    "required_approvals",
    "approvals",
    "policy_id",
    "policy_version",
    "shadow_policy_id",
    "shadow_version",
    "shadow_outcome",
    "shadow_code",
    "shadow_explanation",
    "criticality",
    "risk",
    "priority",
    "request_hash",
    "created_at",
    "decided_at",
    "escalate_at",
    "escalated_at",
    "expires_at",
    "synthetic",
)
CHECK_COLUMNS = (
    "proposal_id",
    "team_id",
    "flaw",
    "explanation",
    "shown_agent",
    "outcome",
    "analyst_id",
    "seconds_on_card",
    "created_at",
    "decided_at",
)
# Who catches an attention check at the start of a shift; from its fourth hour on, each hour
# takes CATCH_FADE of it away, whoever works it: the fatigue report should find that drop.
CATCHES = {"analyst": 0.7, "analyst2": 0.97, "senior": 0.97}
CATCH_FADE = 0.08
DECISION_COLUMNS = (
    "proposal_id",
    "analyst_id",
    "verdict",
    "reason",
    "seconds_on_card",
    "created_at",
)
EXECUTION_COLUMNS = (
    "id",
    "proposal_id",
    "status",
    "idempotency_key",
    "attempts",
    "rollback_attempts",
    "result",
    "error",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "updated_at",
)


class Generator:
    """Turns a stream of arrival times into consistent rows and audit events."""

    def __init__(self, rng: random.Random, *, compact_events: bool = False) -> None:
        self.rng = rng
        # The benchmark keeps one event per state change that the reports read, not every
        # intermediate step, so that a million decisions stays a few million events.
        self.compact = compact_events
        self.agents = {a.slug: a for a in Agent.objects.filter(slug__in=RECORDS)}
        self.policies: dict[str, Policy] = {}
        self.levels: dict[str, dict[str, int]] = {}
        # A policy in shadow judges the proposals made after it started.
        self.shadows: dict[str, Policy] = {}
        self.shadow_levels: dict[str, dict[str, int]] = {}
        for slug, agent in self.agents.items():
            policy = agent.current_policy
            if policy is None:
                continue
            self.policies[slug] = policy
            self.levels[slug] = {g.action: g.level for g in policy.grants.all()}
            shadow = agent.shadow_policy
            if shadow is not None:
                self.shadows[slug] = shadow
                self.shadow_levels[slug] = {g.action: g.level for g in shadow.grants.all()}
        self.users = {u.username: u.pk for u in User.objects.filter(username__in=STYLES)}
        missing = set(STYLES) - set(self.users)
        if missing or not self.policies:
            raise RuntimeError(
                "history needs the demo users and agents: run seed_demo (missing: "
                f"{', '.join(sorted(missing)) or 'agents'})"
            )
        slugs = [s for s in RECORDS if s in self.policies]
        self.agent_slugs = slugs
        self.agent_weights = [RECORDS[s].weight for s in slugs]
        self.order = 0  # tie-breaker keeping events of one proposal in causal order
        # Attention checks, for the first team that has them on (seed_demo makes one).
        self.team = Team.objects.filter(attention_checks=True).order_by("pk").first()
        self.members = (
            set(self.team.members.values_list("username", flat=True)) if self.team else set()
        )
        self.checks_agent = (
            Agent.objects.get_or_create(slug=CHECKS_AGENT, defaults={"name": "Attention checks"})[0]
            if self.team
            else None
        )
        self.since_check = 0

    def _event(
        self,
        out: Generated,
        at: datetime,
        actor_type: str,
        actor: str,
        kind: str,
        pid: Any,
        data: dict,
    ) -> None:
        self.order += 1
        out.events.append((at, self.order, PendingEvent(at, actor_type, actor, kind, pid, data)))

    def proposal(self, out: Generated, created: datetime) -> int:
        """One proposal and everything that followed it; returns the decisions made."""
        rng = self.rng
        slug = rng.choices(self.agent_slugs, self.agent_weights)[0]
        record = RECORDS[slug]
        policy = self.policies[slug]
        action = rng.choices(list(record.actions), list(record.actions.values()))[0]
        kind = catalogue.get(action)
        if kind is None:
            raise RuntimeError(f"{action} is not in the action catalogue")
        pick = demo.scenario_for(rng, slug, action)
        confidence = round(min(0.99, max(0.3, rng.gauss(*record.confidence))), 2)
        criticality = rng.choices([c for c, _ in CRITICALITY], [w for _, w in CRITICALITY])[0]
        given = RoutingInput(
            level=self.levels[slug].get(action, 0),
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
        shadow = self.shadows.get(slug)
        if shadow is not None and created < shadow.created_at:
            shadow = None
        shadowed = None
        if shadow is not None:
            shadowed = route(
                replace(
                    given,
                    level=self.shadow_levels[slug].get(action, 0),
                    auto_threshold=shadow.auto_threshold,
                    review_threshold=shadow.review_threshold,
                )
            )
        pid = uuid.uuid4()
        status = routed.outcome.value
        good = rng.random() < record.good_at(confidence)
        decided_at = None
        escalate_at = escalated_at = expires_at = None
        approvals = 0
        decisions = 0
        if status == "pending":
            escalate_at = created + timedelta(minutes=policy.escalate_after_minutes)
            expires_at = created + timedelta(minutes=policy.expire_after_minutes)
        execution = uuid.uuid4() if status == "auto_approved" else None
        submission = events.submitted(
            agent=slug,
            action=action,
            target=pick.target,
            target_canonical=pick.target,  # the demo's targets are written canonically
            confidence=confidence,
            status=status,
            policy_version=policy.version,
            asset=None,
            criticality=criticality,
            explanation=routed.explanation[:300],
            execution=execution,
            shadow=events.shadow_judgement(
                version=shadow.version,
                outcome=shadowed.outcome.value,
                code=shadowed.code.value if shadowed.code else "",
                explanation=shadowed.explanation[:300],
            )
            if shadow is not None and shadowed is not None
            else None,
        )
        self._event(out, created, "agent", slug, events.SUBMITTED, pid, submission)
        executed_at = None
        if status == "auto_approved":
            decided_at = created
            executed_at = created
        elif status == "pending":
            who = on_shift(created, rng)
            style = STYLES[who]
            wait = rng.expovariate(1 / (style.wait_minutes * 60))
            if who == "senior" and rng.random() < 0.03:
                wait = policy.expire_after_minutes * 60 + 1  # lost in the night's backlog
            first_at = created + timedelta(seconds=max(5.0, wait))
            if expires_at and first_at >= expires_at:
                if escalate_at:
                    escalated_at = escalate_at
                    self._escalated(out, pid, escalate_at)
                status = "expired"
                decided_at = expires_at
                expiry = events.expiry(expires_at=expires_at, approvals=0)
                self._event(out, expires_at, "system", "system", events.EXPIRED, pid, expiry)
            else:
                if escalate_at and first_at > escalate_at:
                    escalated_at = escalate_at
                    self._escalated(out, pid, escalate_at)
                deciders = [who]
                if routed.required_approvals == 2:
                    deciders = [who if who != "senior" else "analyst2", "senior"]
                at = first_at
                for index, name in enumerate(deciders):
                    style = STYLES[name]
                    into = hours_into_shift(at, name)
                    median = style.card_median * (style.fatigue**into)
                    card = round(
                        min(900.0, rng.lognormvariate(math.log(median), style.card_sigma)), 1
                    )
                    tired = 1 - style.fatigue**into  # careless approvals rise as the night goes
                    approve = good or rng.random() < style.approve_anyway + 0.5 * tired
                    verdict = "approve" if approve else "reject"
                    reason = "" if approve else "Evidence does not support this action."
                    out.decisions.append((pid, self.users[name], verdict, reason, card, at))
                    decisions += 1
                    self.since_check += name in self.members
                    final = index == len(deciders) - 1 or verdict == "reject"
                    if verdict == "reject":
                        status = "rejected"
                        decided_at = at
                        data = events.rejection(reason=reason, seconds_on_card=card)
                        self._event(out, at, "user", name, events.REJECTED, pid, data)
                        break
                    approvals += 1
                    if final:
                        status = "approved"
                        decided_at = at
                        executed_at = at
                        execution = uuid.uuid4()
                    data = events.approval(
                        reason=reason,
                        approvals=approvals,
                        required_approvals=routed.required_approvals,
                        seconds_on_card=card,
                        execution=execution,
                    )
                    if final:
                        self._event(out, at, "user", name, events.APPROVED, pid, data)
                        break
                    self._event(out, at, "user", name, events.APPROVAL_RECORDED, pid, data)
                    at = at + timedelta(seconds=rng.expovariate(1 / 600) + 30)
        out.proposals.append(
            (
                pid,
                self.agents[slug].pk,
                action,
                pick.target,
                pick.target,  # the demo's targets are written canonically
                json.dumps(pick.params),
                confidence,
                pick.rationale,
                json.dumps([{"kind": pick.evidence_kind, "ref": f"REF-{rng.randint(100, 999)}"}]),
                "high",
                status,
                "",
                routed.explanation[:300],
                routed.required_approvals,
                approvals,
                policy.pk,
                policy.version,
                shadow.pk if shadow else None,
                shadow.version if shadow else None,
                shadowed.outcome.value if shadowed else "",
                shadowed.code.value if shadowed and shadowed.code else "",
                shadowed.explanation[:300] if shadowed else "",
                criticality,
                kind.risk,
                0.0,
                "history",
                created,
                decided_at,
                escalate_at,
                escalated_at,
                expires_at,
                False,
            )
        )
        if executed_at is not None and execution is not None:
            self._execution(out, pid, execution, kind.reversible, executed_at, good, slug)
        if self.team is not None and self.since_check >= self.team.check_every:
            self.since_check = 0
            self._attention_check(out, (decided_at or created) + timedelta(minutes=1))
        return decisions

    def _attention_check(self, out: Generated, created: datetime) -> None:
        """A check put in the queue at `created`, decided by whoever is on shift: caught or
        missed in their style, less often caught the longer their shift has run."""
        rng = self.rng
        slug = rng.choice([s for s in self.agent_slugs if s != "intern-bot"])
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
        kind = catalogue.ACTIONS[action]
        policy = self.policies[slug]
        pid = uuid.uuid4()
        who = on_shift(created, rng)
        style = STYLES[who]
        into = hours_into_shift(created, who)
        caught = rng.random() < CATCHES[who] - CATCH_FADE * max(0.0, into - 3)
        card = round(min(900.0, rng.lognormvariate(math.log(style.card_median), style.card_sigma)))
        at = created + timedelta(seconds=max(5.0, rng.expovariate(1 / (style.wait_minutes * 60))))
        at = min(at, created + timedelta(minutes=policy.expire_after_minutes - 1))
        submission = events.submitted(
            agent=CHECKS_AGENT,
            action=action,
            target=composed.target,
            target_canonical=composed.target.lower(),
            confidence=composed.confidence,
            status="pending",
            policy_version=None,
            asset=None,
            criticality="medium",
            explanation="pending: analyst approval required (level 2)",
        )
        inserted = events.check_inserted(
            submission,
            team=self.team.name,
            shown_agent=slug,
            flaw=composed.flaw.value,
            what_is_wrong=composed.explanation,
            modelled_on=None,
        )
        self._event(out, created, "system", "system", events.CHECK_INSERTED, pid, inserted)
        if caught:
            reason = "The card does not add up."
            out.decisions.append((pid, self.users[who], "reject", reason, card, at))
            data = events.check_caught(
                reason=reason, seconds_on_card=card, flaw=composed.flaw.value
            )
            self._event(out, at, "user", who, events.REJECTED, pid, data)
        else:
            data = events.check_missed(
                reason="",
                seconds_on_card=card,
                flaw=composed.flaw.value,
                what_is_wrong=composed.explanation,
            )
            self._event(out, at, "user", who, events.CHECK_MISSED, pid, data)
        out.proposals.append(
            (
                pid,
                self.checks_agent.pk,
                action,
                composed.target,
                composed.target.lower(),
                json.dumps(composed.params),
                composed.confidence,
                composed.rationale,
                json.dumps(composed.evidence),
                composed.severity,
                "rejected" if caught else "withdrawn",
                "",
                "pending: analyst approval required (level 2)",
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
                kind.risk,
                0.0,
                "history",
                created,
                at,
                created + timedelta(minutes=policy.escalate_after_minutes),
                None,
                created + timedelta(minutes=policy.expire_after_minutes),
                True,
            )
        )
        out.checks.append(
            (
                pid,
                self.team.pk,
                composed.flaw.value,
                composed.explanation,
                slug,
                "caught" if caught else "missed",
                self.users[who],
                card,
                created,
                at,
            )
        )

    def _escalated(self, out: Generated, pid: Any, at: datetime) -> None:
        data = events.escalation(escalate_at=at, approvals=0)
        self._event(out, at, "system", "system", events.ESCALATED, pid, data)

    def _execution(
        self,
        out: Generated,
        pid: Any,
        eid: uuid.UUID,
        reversible: bool,
        at: datetime,
        good: bool,
        slug: str,
    ) -> None:
        rng = self.rng
        started = at + timedelta(seconds=rng.lognormvariate(math.log(2.0), 0.6))
        finished = started + timedelta(seconds=rng.lognormvariate(math.log(3.0), 0.5))
        failed = rng.random() < RECORDS[slug].failure_rate
        status = "failed" if failed else "succeeded"
        updated = finished
        if not self.compact:
            self._event(
                out,
                started,
                "system",
                "system",
                "execution.started",
                pid,
                {"execution": str(eid), "status": "running", "attempt": 1},
            )
        if failed:
            self._event(
                out,
                finished,
                "system",
                "system",
                "execution.failed",
                pid,
                {
                    "execution": str(eid),
                    "status": "failed",
                    "attempt": 1,
                    "error": "connector refused the change",
                },
            )
        else:
            self._event(
                out,
                finished,
                "system",
                "system",
                "execution.succeeded",
                pid,
                {"execution": str(eid), "status": "succeeded", "attempt": 1},
            )
            if not good and reversible and rng.random() < 0.6:
                status = "rolled_back"
                asked = finished + timedelta(minutes=rng.uniform(5, 240))
                updated = asked + timedelta(seconds=4)
                self._event(
                    out,
                    asked,
                    "user",
                    "analyst2",
                    "execution.rollback_requested",
                    pid,
                    {"execution": str(eid), "status": "rolling_back", "reason": "false positive"},
                )
                if not self.compact:
                    self._event(
                        out,
                        updated,
                        "system",
                        "system",
                        "execution.rollback_succeeded",
                        pid,
                        {"execution": str(eid), "status": "rolled_back", "attempt": 1},
                    )
        out.executions.append(
            (
                eid,
                pid,
                status,
                uuid.uuid4().hex,
                1,
                1 if status == "rolled_back" else 0,
                json.dumps({"ok": not failed}),
                "connector refused the change" if failed else "",
                at,
                at,
                started,
                finished,
                updated,
            )
        )
