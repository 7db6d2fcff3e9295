"""Reads over the audit log, decisions and executions for the audit page and the reports."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from agents import catalogue
from agents.models import Agent
from soc_console import roles

from .models import AuditEvent, VerificationRun


def audit_events(
    *,
    actor: str | None = None,
    event_type: str | None = None,
    proposal_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    upto_seq: int | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if upto_seq:
        qs = qs.filter(seq__lte=upto_seq)
    if actor:
        qs = qs.filter(actor=actor)
    if event_type:
        qs = qs.filter(event_type=event_type)
    if proposal_id:
        qs = qs.filter(proposal_id=proposal_id)
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    return qs


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
        "agents": list(Agent.objects.order_by("slug").values_list("slug", flat=True)),
        "analysts": list(analysts),
    }
