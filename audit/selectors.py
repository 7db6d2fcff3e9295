"""Reads over the audit log, decisions and executions for the audit page and the reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from agents import catalogue
from agents.models import Agent
from approvals.models import CHECKS_AGENT
from soc_console import roles

from .models import AuditEvent, VerificationRun
from .verify import verification_is_genuine


def audit_events(
    *,
    actor: str | None = None,
    event_type: str | None = None,
    proposal_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    upto_seq: int | None = None,
) -> QuerySet[AuditEvent]:
    """The events that pass every filter given; one left empty filters nothing."""
    lookups = {
        "seq__lte": upto_seq,
        "actor": actor,
        "event_type": event_type,
        "proposal_id": proposal_id,
        "at__gte": since,
        "at__lt": until,
    }
    return AuditEvent.objects.filter(
        **{lookup: value for lookup, value in lookups.items() if value}
    )


def chain_head() -> AuditEvent | None:
    """The chain's head: its last event."""
    return AuditEvent.objects.order_by("-seq").only("seq", "hash").first()


def last_verification() -> VerificationRun | None:
    return VerificationRun.objects.order_by("-at").first()


def event_types() -> list[str]:
    return list(
        AuditEvent.objects.order_by("event_type").values_list("event_type", flat=True).distinct()
    )


def report_choices() -> dict[str, list[str]]:
    """What the report filters offer: actions, agents and the people who decide."""
    # Everyone who may decide a proposal: admins may, and their decisions are reported too.
    analysts = (
        User.objects.filter(
            Q(groups__name__in=[roles.ANALYST, roles.SENIOR, roles.ADMIN]) | Q(is_superuser=True)
        )
        .order_by("username")
        .values_list("username", flat=True)
        .distinct()
    )
    return {
        "actions": sorted(catalogue.ACTIONS),
        "agents": list(
            Agent.objects.exclude(slug=CHECKS_AGENT).order_by("slug").values_list("slug", flat=True)
        ),
        "analysts": list(analysts),
    }


# --- one event, in words -----------------------------------------------------------------------

# What each event type records, as a reader says it; an unknown type is spelled out from its name.
EVENT_WORDS = {
    "proposal.submitted": "Proposal submitted and routed by the policy",
    "proposal.approval_recorded": "Approval recorded (more approvals needed)",
    "proposal.approved": "Proposal approved",
    "proposal.rejected": "Proposal rejected",
    "proposal.escalated": "Proposal escalated to senior analysts",
    "proposal.expired": "Proposal expired unanswered",
    "proposal.withdrawn": "Proposal withdrawn before a decision (by the agent, or for it)",
    "proposal.review_confirmed": "Run without approval confirmed by an analyst",
    "proposal.approval_undone": "Approval undone before dispatch",
    "execution.started": "Execution started",
    "execution.succeeded": "Execution succeeded",
    "execution.failed": "Execution failed",
    "execution.retry_scheduled": "Execution retry scheduled",
    "execution.held": "Execution held (emergency stop, suspension or demotion) for an analyst",
    "execution.reconfirmed": "Held execution re-confirmed",
    "execution.cancelled": "Held execution cancelled: it never runs",
    "execution.requeued": "Execution queued again",
    "execution.retried": "Failed execution retried",
    "execution.acknowledged": "Failed execution acknowledged",
    "execution.rollback_requested": "Rollback requested",
    "execution.rollback_started": "Rollback started",
    "execution.rollback_succeeded": "Rollback succeeded",
    "execution.rollback_failed": "Rollback failed",
    "emergency_stop.engaged": "Emergency stop engaged",
    "emergency_stop.released": "Emergency stop released",
    "agent.registered": "Agent registered",
    "agent.suspended": "Agent suspended",
    "agent.resumed": "Agent resumed",
    "agent.callback_set": "Agent callback set",
    "policy.published": "Policy version published",
    "grant.demoted": "Grant demoted automatically by a demotion rule",
    "policy.shadow_started": "Policy version put in shadow",
    "policy.shadow_discarded": "Shadow policy discarded",
    "policy.promoted": "Shadow policy promoted to live",
    "apikey.issued": "API key issued",
    "apikey.revoked": "API key revoked",
    "asset.saved": "Asset saved",
    "asset.deleted": "Asset deleted",
    "role.granted": "Role granted",
    "role.synced": "Roles set by the identity provider",
    "signin.refused": "Sign-in refused",
    "signin.locked_out": "Sign-in locked out",
    "audit.rekeyed": "Audit key rotated",
}

ACTOR_TYPES = {"agent": "agent", "user": "person", "system": "the console itself"}


def event_words(event_type: str) -> str:
    if event_type in EVENT_WORDS:
        return EVENT_WORDS[event_type]
    return event_type.replace(".", ": ").replace("_", " ").capitalize()


def value_text(value: Any) -> str:
    """A data value as a reader wants it: no JSON punctuation, empty things said as such."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {value_text(v)}" for k, v in sorted(value.items())) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value) or "none"
    return str(value)


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


@dataclass(frozen=True)
class DataRow:
    """One entry of an event's data; `before` only where the event (or the version it
    replaced) says what it was."""

    key: str
    label: str
    value: str
    before: str | None = None

    @property
    def changed(self) -> bool:
        return self.before is not None and self.before != self.value


@dataclass(frozen=True)
class Coverage:
    """Whether the last verification read this event, and what it found."""

    tone: str  # good, neutral, warning, bad (the reports' tones)
    text: str
    run: VerificationRun | None


@dataclass(frozen=True)
class EventDetail:
    event: AuditEvent
    words: str
    actor_type: str
    rows: list[DataRow]
    has_before: bool
    before_from: AuditEvent | None  # the event the "before" column was read from, if another
    previous_seq: int | None
    next_seq: int | None
    coverage: Coverage


LIVE_VERSION_EVENTS = ("policy.published", "policy.promoted")


def _before_of(event: AuditEvent) -> tuple[dict[str, Any] | None, AuditEvent | None]:
    """What the event's data was before it: recorded in the event (an asset's `before`), or
    for a policy version the version it replaced, read from the chain itself."""
    data = event.data if isinstance(event.data, dict) else {}
    if isinstance(data.get("before"), dict):
        return data["before"], None
    # A live version replaced the one published (or promoted) before it; a shadow is compared
    # with the live version it was drafted from.
    if event.event_type in LIVE_VERSION_EVENTS + ("policy.shadow_started",) and data.get("agent"):
        previous = (
            AuditEvent.objects.filter(
                event_type__in=LIVE_VERSION_EVENTS, seq__lt=event.seq, data__agent=data["agent"]
            )
            .order_by("-seq")
            .first()
        )
        if previous is not None and isinstance(previous.data, dict):
            return previous.data, previous
    return None, None


def data_rows(event: AuditEvent) -> tuple[list[DataRow], bool, AuditEvent | None]:
    data = event.data if isinstance(event.data, dict) else {"value": event.data}
    before, source = _before_of(event)
    rows = []
    for key, value in data.items():
        if key == "before":
            continue
        was = None
        if before is not None:
            was = value_text(before.get(key)) if key in before else "—"
        rows.append(DataRow(key, _label(key), value_text(value), was))
    return rows, before is not None, source


def event_summary(event: AuditEvent, *, limit: int = 3) -> str:
    """A few of the event's facts in one line, for the audit list."""
    data = event.data if isinstance(event.data, dict) else {}
    shown = [
        f"{_label(k)}: {value_text(v)}"
        for k, v in data.items()
        if k != "before" and not isinstance(v, dict | list)
    ]
    return " · ".join(shown[:limit]) + (" …" if len(shown) > limit else "")


def coverage(event: AuditEvent) -> Coverage:
    run = last_verification()
    if run is None:
        return Coverage("warning", "The chain has never been verified.", None)
    when = f"{run.at:%Y-%m-%d %H:%M:%S}"
    if not verification_is_genuine(run):
        return Coverage(
            "bad",
            f"The last verification record ({when}) is not signed with the audit key: "
            "it says nothing about this event. Verify the chain again.",
            run,
        )
    head = AuditEvent.objects.filter(hash=run.head_hash).values_list("seq", flat=True).first()
    # A head that no longer matches any stored hash was itself changed: fall back on time.
    covered = event.seq <= head if head is not None else event.at <= run.at
    if not covered:
        return Coverage(
            "neutral",
            f"Recorded after the last verification ({when}); not verified yet.",
            run,
        )
    problems = run.problems if isinstance(run.problems, list) else []
    named = [p for p in problems if isinstance(p, dict) and p.get("seq") == event.seq]
    if named:
        return Coverage(
            "bad", f"The verification of {when} found this event bad: {named[0]['problem']}", run
        )
    if run.ok:
        return Coverage(
            "good", f"Covered by the verification of {when}: the chain was intact.", run
        )
    first = run.first_bad_seq
    if first is not None and event.seq > first:
        return Coverage(
            "warning",
            f"Read by the verification of {when}, which found the chain broken earlier, at "
            f"event #{first}: nothing after that point can be trusted.",
            run,
        )
    return Coverage(
        "good",
        f"Covered by the verification of {when}: intact up to here "
        f"(the chain breaks later{f', at event #{first}' if first is not None else ''}).",
        run,
    )


def event_detail(seq: int) -> EventDetail | None:
    event = AuditEvent.objects.filter(seq=seq).first()
    if event is None:
        return None
    rows, has_before, source = data_rows(event)
    previous = (
        AuditEvent.objects.filter(seq__lt=seq).order_by("-seq").values_list("seq", flat=True)
    ).first()
    following = (
        AuditEvent.objects.filter(seq__gt=seq).order_by("seq").values_list("seq", flat=True)
    ).first()
    return EventDetail(
        event=event,
        words=event_words(event.event_type),
        actor_type=ACTOR_TYPES.get(event.actor_type, event.actor_type),
        rows=rows,
        has_before=has_before,
        before_from=source,
        previous_seq=previous,
        next_seq=following,
        coverage=coverage(event),
    )
