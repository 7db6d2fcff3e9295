from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from agents import catalogue
from agents.models import Agent, ApiKey, Asset, Criticality, Policy

# The longest note or reason a decision keeps.
MAX_TEXT = 2000
# A rejection or a rollback puts its reason on record: at least this many characters. The API's
# schema, the console's forms (live cards included) and the services all read this one number.
MIN_REASON = 3


class ProposalStatus(models.TextChoices):
    BLOCKED = "blocked", "Blocked"
    ADVISORY = "advisory", "Advisory"
    FLAGGED = "flagged", "Flagged"
    AUTO_APPROVED = "auto_approved", "Auto-approved"
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"


# What an agent's proposal says, by the names the row and its card use (the agent aside).
PROPOSED_FIELDS = ("action", "target", "params", "confidence", "rationale", "evidence", "severity")


class Proposal(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="proposals")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255)  # as the agent wrote it
    # The one identity it names (agents.targets): what was routed, matched and acted on.
    target_canonical = models.CharField(max_length=255, default="")
    params = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField()
    rationale = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)
    severity = models.CharField(
        max_length=16, choices=Criticality.choices, default=Criticality.MEDIUM
    )

    status = models.CharField(max_length=16, choices=ProposalStatus.choices)
    block_code = models.CharField(max_length=32, blank=True)
    routing_explanation = models.CharField(max_length=300, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=0)
    approvals = models.PositiveSmallIntegerField(default=0)
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, null=True, related_name="+")
    policy_version = models.PositiveIntegerField(null=True)
    # What the agent's shadow policy, if it had one, would have done: recorded beside the live
    # outcome, never acted on and never shown to the agent (only the version is named).
    shadow_policy = models.ForeignKey(
        Policy, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    shadow_version = models.PositiveIntegerField(null=True, blank=True)
    shadow_outcome = models.CharField(max_length=16, blank=True)
    shadow_code = models.CharField(max_length=32, blank=True)
    shadow_explanation = models.CharField(max_length=300, blank=True)
    asset = models.ForeignKey(Asset, null=True, blank=True, on_delete=models.SET_NULL)
    # Snapshots at submission: later inventory or catalogue edits must not rewrite history.
    criticality = models.CharField(max_length=16, choices=Criticality.choices)
    risk = models.CharField(max_length=16)
    # Higher sorts first. Stored as base - k * created_epoch, so that ordering by this column
    # equals ordering by base + k * age at any moment (see selectors.priority_key).
    priority = models.FloatField(default=0)

    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)

    created_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # For auto-approved proposals: the after-the-fact review ("ran without approval").
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # An attention check (approvals.attention): made by the console, never by an agent; never
    # executed, never sent to an agent, left out of every agent's figures. Its AttentionCheck
    # row says what is wrong with it and how it ended.
    synthetic = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="proposal_idempotency_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(confidence__gte=0) & models.Q(confidence__lte=1),
                name="proposal_confidence_range",
            ),
        ]
        indexes = [
            models.Index(
                fields=["-priority"],
                condition=models.Q(status="pending"),
                name="proposal_pending_priority",
            ),
            models.Index(fields=["agent", "-created_at"], name="proposal_agent_recent"),
            # A card's duplicates and the other open proposals on its target (selectors.
            # duplicate_groups), read for every live card: pending rows only.
            models.Index(
                fields=["target_canonical", "action"],
                condition=models.Q(status="pending"),
                name="proposal_pending_target",
            ),
            models.Index(fields=["status", "expires_at"], name="proposal_status_expiry"),
            # A shadow's score reads the proposals it judged: only those are in it.
            models.Index(
                fields=["shadow_policy"],
                condition=models.Q(shadow_policy__isnull=False),
                name="proposal_shadow",
            ),
            # The circuit breaker's count of an agent's open proposals (approvals.sql).
            models.Index(
                fields=["agent"],
                condition=models.Q(status="pending"),
                name="proposal_agent_pending",
            ),
            # The blast-radius budget's count: a grant's automatic executions in the last hour.
            # Only auto-approved rows are in it, so the count reads at most a budget's worth.
            models.Index(
                fields=["agent", "action", "-created_at"],
                condition=models.Q(status="auto_approved"),
                name="proposal_agent_auto_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target} ({self.status})"

    @property
    def action_label(self) -> str:
        kind = catalogue.get(self.action)
        return kind.label if kind else self.action

    @property
    def agent_shown(self) -> str:
        """The agent a card names. An attention check is owned by the console's own checks
        agent but names the real agent it was modelled on, so that it looks like any card."""
        if self.synthetic:
            check = getattr(self, "attention_check", None)  # one query, for checks only
            if check is not None:
                return check.shown_agent
        return self.agent.slug


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Decision(models.Model):
    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="decisions")
    analyst = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions"
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    reason = models.TextField(blank=True)
    seconds_on_card = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # The two-person rule in the database: one analyst decides a proposal at most once.
            models.UniqueConstraint(
                fields=["proposal", "analyst"], name="decision_once_per_analyst"
            )
        ]
        indexes = [models.Index(fields=["analyst", "created_at"], name="decision_analyst_time")]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.analyst_id}"


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    HELD = "held", "Held"
    # Held, then declined by an analyst with a reason: it never runs (execution_cancel_held).
    CANCELLED = "cancelled", "Cancelled"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    proposal = models.OneToOneField(Proposal, on_delete=models.CASCADE, related_name="execution")
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, db_index=True)
    # Carried by every connector call of this execution; a rollback uses `<key>:undo`.
    idempotency_key = models.CharField(max_length=64, unique=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    rollback_attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    # A failed execution an analyst has seen and dealt with: it stays failed (the record of
    # what happened) but leaves the "needs attention" list and the failed counter. A retry
    # clears it, so a retry that fails again needs attention again.
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.proposal_id} {self.status}"

    @property
    def result_json(self) -> str:
        """The connector's result as the API returns it: JSON, for the proposal page."""
        return json.dumps(self.result, indent=2, sort_keys=True)


class ConnectorCall(models.Model):
    """The simulated systems' ledger: one row per idempotency key, so a repeat has no effect."""

    idempotency_key = models.CharField(max_length=80, unique=True)
    connector = models.CharField(max_length=32)
    operation = models.CharField(max_length=48)
    target = models.CharField(max_length=255)
    result = models.JSONField(default=dict)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.connector}.{self.operation} {self.target}"


class ConnectorState(models.Model):
    """What the simulated EDR, firewall, identity provider… currently hold, per target."""

    connector = models.CharField(max_length=32)
    target = models.CharField(max_length=255)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "target"], name="connector_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.connector} {self.target}"


class Team(models.Model):
    """Analysts who work together, and whether the console tests their attention.

    With attention checks on, the console puts one check in the queue after every
    `check_every` decisions the team's members give (approvals.services.attention).
    """

    name = models.CharField(max_length=80, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    attention_checks = models.BooleanField(
        default=False, help_text="Insert attention checks into the queue for this team."
    )
    check_every = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(5), MaxValueValidator(10_000)],
        help_text="One attention check per this many decisions given by the team's members.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CheckFlaw(models.TextChoices):
    """What a careful analyst should see is wrong with an attention check."""

    OTHER_HOST = "other_host", "the rationale names another host"
    EVIDENCE_CONTRADICTS = "evidence_contradicts", "the evidence contradicts the action"
    WRONG_KIND = "wrong_kind", "the target is the wrong kind for the action"


class CheckOutcome(models.TextChoices):
    OPEN = "open", "Open"
    CAUGHT = "caught", "Caught (rejected)"
    MISSED = "missed", "Missed (approved)"
    EXPIRED = "expired", "Expired unanswered"


class AttentionCheck(models.Model):
    """One synthetic proposal the console put in the queue, and how it ended."""

    proposal = models.OneToOneField(
        Proposal, on_delete=models.CASCADE, related_name="attention_check"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    flaw = models.CharField(max_length=24, choices=CheckFlaw.choices)
    # What the card got wrong, in words, shown to an analyst who approves it.
    explanation = models.TextField()
    # The real agent whose proposal it was modelled on; the card names it.
    shown_agent = models.CharField(max_length=64)
    outcome = models.CharField(
        max_length=8, choices=CheckOutcome.choices, default=CheckOutcome.OPEN
    )
    analyst = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="attention_checks",
    )
    seconds_on_card = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="check_team_recent"),
            models.Index(fields=["analyst", "decided_at"], name="check_analyst_time"),
        ]

    def __str__(self) -> str:
        return f"attention check {self.proposal_id} ({self.outcome})"


# The agent that owns every attention check: made by migration 0008, with no key, no policy
# and no callback, so nothing an agent can reach (its API, its callbacks) ever shows a check.
CHECKS_AGENT = "console-attention-checks"


def listed_agents() -> models.QuerySet[Agent]:
    """The agents the console's pages show and act on: every one but the checks agent, whose
    page, shadow policy or suspension would give the checks away (or change them)."""
    return Agent.objects.exclude(slug=CHECKS_AGENT)
