from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from . import ladder

# LOW = "low" … CRITICAL = "critical", in the ladder's order; severity uses the same choices.
Criticality = models.TextChoices(
    "Criticality", [(step.upper(), (step, step.capitalize())) for step in ladder.LADDER]
)


class Level(models.IntegerChoices):
    """The autonomy levels a grant gives one action , with the names pages show."""

    MANUAL = 0, "manual only"
    ADVISORY = 1, "advisory"
    HUMAN_IN_THE_LOOP = 2, "human-in-the-loop"
    CONDITIONAL = 3, "conditional autonomy"
    HIGH_STAKES = 4, "high-stakes autonomy"


class Agent(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, blank=True)
    description = models.TextField(blank=True)
    suspended = models.BooleanField(default=False)
    suspended_reason = models.TextField(blank=True)
    # Where the agent wants to hear about decisions and completions (optional).
    callback_url = models.URLField(blank=True)
    callback_secret = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def current_policy(self) -> Policy | None:
        """The live policy: the one that decides (PolicyQuerySet.live)."""
        return self.policies.live().first()

    @property
    def shadow_policy(self) -> Policy | None:
        """The candidate version judging proposals beside the live one, if any."""
        return self.policies.shadow().first()


class ApiKey(models.Model):
    """An agent's credential: a public prefix to find it and a keyed digest to check it.

    The secret itself is shown once at creation and never stored.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    label = models.CharField(max_length=80, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.agent.slug}:{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PolicyState(models.TextChoices):
    """What a policy version does. The live policy is the highest `live` version; a `shadow`
    judges every proposal beside it without deciding anything (at most one per agent)."""

    LIVE = "live", "live"
    SHADOW = "shadow", "in shadow"
    PROMOTED = "promoted", "promoted (its content published as a live version)"
    DISCARDED = "discarded", "discarded"


class PolicyQuerySet(models.QuerySet):
    """The one definition of which version decides: every "current policy" read uses it
    (agents.sql states the same condition for the intake path's single statement)."""

    def live(self) -> PolicyQuerySet:
        """Live versions, the deciding one first."""
        return self.filter(state=PolicyState.LIVE).order_by("-version")

    def shadow(self) -> PolicyQuerySet:
        return self.filter(state=PolicyState.SHADOW)


class Policy(models.Model):
    """One version of an agent's guardrails: the seven parts of the policy template.

    Policies are never edited in place; a change publishes a new version, and every proposal
    keeps the version it was judged under. Only `state` changes, and only from shadow to
    promoted or discarded.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="policies")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=PolicyState.choices, default=PolicyState.LIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    # 1. purpose and scope
    purpose = models.TextField(blank=True)
    scope_tiers = models.JSONField(
        default=list, blank=True, help_text="Criticality tiers it may touch; empty means all."
    )
    scope_groups = models.JSONField(
        default=list, blank=True, help_text="Asset groups it may touch; empty means all."
    )
    # 2. allowed data and tools
    allowed_connectors = models.JSONField(
        default=list, blank=True, help_text="Connectors it may act through; empty means all."
    )
    # 4. confidence thresholds
    auto_threshold = models.FloatField(
        default=0.90, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    review_threshold = models.FloatField(
        default=0.50, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    # 5. escalation rules
    escalate_after_minutes = models.PositiveIntegerField(default=15)
    expire_after_minutes = models.PositiveIntegerField(default=240)
    notify = models.CharField(max_length=200, blank=True, default="senior_analyst")
    # 6. logging and audit requirements
    required_evidence = models.JSONField(
        default=list, blank=True, help_text="Evidence kinds every proposal must carry."
    )
    # 7. rollback procedure and emergency stop
    rollback_procedure = models.TextField(blank=True)
    # The circuit breaker: an agent that has this many proposals open, or has sent this many
    # in the last minute, is suspended by the next one (approvals.services.breaker).
    max_pending = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1)],
        help_text="Open (pending) proposals at most; the next one suspends the agent.",
    )
    max_proposals_per_minute = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Proposals per minute at most; the next one suspends the agent.",
    )

    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["agent", "-version"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["agent", "version"], name="policy_version_unique"),
            models.UniqueConstraint(
                fields=["agent"],
                condition=models.Q(state="shadow"),
                name="policy_one_shadow_per_agent",
            ),
            models.CheckConstraint(
                condition=models.Q(review_threshold__lte=models.F("auto_threshold")),
                name="policy_review_below_auto",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.version}"

    def deadlines(self, since: datetime) -> tuple[datetime, datetime]:
        """When a proposal left pending under this policy at `since` escalates to the senior
        analysts, and when it expires."""
        return (
            since + timedelta(minutes=self.escalate_after_minutes),
            since + timedelta(minutes=self.expire_after_minutes),
        )

    def level_for(self, action: str) -> int:
        for grant in self.grants.all():
            if grant.action == action:
                return grant.level
        return 0


DEFAULT_AUTO_PER_HOUR = 20
DEFAULT_TARGETS_PER_HOUR = 10

# Demotion rules (approvals.services.demotion): the level a grant drops to when one fires, and
# the failure-rate rule's window and share: more than 25 % of the last 20 executions failed or
# rolled back.
DEFAULT_DEMOTE_TO_LEVEL = int(Level.HUMAN_IN_THE_LOOP)
DEFAULT_FAILURE_WINDOW = 20
DEFAULT_FAILURE_PERCENT = 25


class Grant(models.Model):
    """3. allowed actions: the autonomy level of one action type under one policy version."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="grants")
    action = models.CharField(max_length=64)
    level = models.PositiveSmallIntegerField(
        choices=Level.choices, validators=[MinValueValidator(0), MaxValueValidator(4)]
    )
    # The blast-radius budget: beyond it, what would have run at once waits for a human
    # (routing's `budget_exhausted`). Counted over the agent's automatic executions of this
    # action in the last hour, whatever policy version approved them.
    max_auto_per_hour = models.PositiveIntegerField(
        default=DEFAULT_AUTO_PER_HOUR,
        help_text="Automatic executions of this action per hour at most.",
    )
    max_targets_per_hour = models.PositiveIntegerField(
        default=DEFAULT_TARGETS_PER_HOUR,
        help_text="Distinct targets this action runs on automatically per hour at most.",
    )
    # Demotion rules: when one fires, a new policy version drops this grant to
    # `demote_to_level` at once (never raises it), audited as grant.demoted.
    demote_to_level = models.PositiveSmallIntegerField(
        choices=Level.choices,
        default=DEFAULT_DEMOTE_TO_LEVEL,
        validators=[MaxValueValidator(4)],
        help_text="The level a demotion rule drops this grant to.",
    )
    demote_on_automatic_rollback = models.BooleanField(
        default=True, help_text="Demote when an analyst rolls back an automatic execution."
    )
    demote_on_over_confidence = models.BooleanField(
        default=True,
        help_text="Demote when an analyst rejects a proposal whose confidence was at or above "
        "the auto threshold.",
    )
    demote_failure_window = models.PositiveIntegerField(
        default=DEFAULT_FAILURE_WINDOW,
        help_text="K: the failure-rate rule looks at the last K executions; 0 turns it off.",
    )
    demote_failure_percent = models.PositiveSmallIntegerField(
        default=DEFAULT_FAILURE_PERCENT,
        validators=[MaxValueValidator(100)],
        help_text="X: demote when more than X % of the last K executions failed or were rolled "
        "back.",
    )

    class Meta:
        ordering = ["action"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "action"], name="grant_action_unique"),
            models.CheckConstraint(condition=models.Q(level__lte=4), name="grant_level_range"),
            models.CheckConstraint(
                condition=models.Q(demote_to_level__lte=4), name="grant_demote_to_level_range"
            ),
            models.CheckConstraint(
                condition=models.Q(demote_failure_percent__lte=100),
                name="grant_demote_failure_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action}={self.level}"


class Asset(models.Model):
    class Kind(models.TextChoices):
        HOST = "host", "Host"
        IP = "ip", "IP address or network"
        USER = "user", "User"
        MAILBOX = "mailbox", "Mailbox"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    identifier = models.CharField(max_length=255)
    criticality = models.CharField(
        max_length=16, choices=Criticality.choices, default=Criticality.MEDIUM
    )
    group = models.CharField(max_length=64, blank=True)
    owner = models.CharField(max_length=120, blank=True)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["kind", "identifier"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "identifier"], name="asset_identity_unique")
        ]

    def __str__(self) -> str:
        return f"{self.identifier} ({self.criticality})"


class AssetAlias(models.Model):
    """One name an asset is known by, canonical (agents.targets): its identifier, another host
    name, an address or network, a down-level or bare user name.

    Every asset has one row for its identifier (`primary`), written by the service that saves
    the asset, so that matching a target against the whole inventory is one indexed query.
    """

    class Namespace(models.TextChoices):
        IP = "ip", "Address or network"
        HOST = "host", "Host name"
        USER = "user", "User or mailbox"

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="aliases")
    namespace = models.CharField(max_length=8, choices=Namespace.choices)
    value = models.CharField(max_length=255, help_text="The canonical name.")
    key = models.CharField(
        max_length=255, help_text="What targets are matched on: the name's look-alike skeleton."
    )
    label = models.CharField(
        max_length=255, blank=True, help_text="First label of a host name; a user's local part."
    )
    # Addresses covered, as 32 hex digits (IPv4 at ::ffff:0:0/96), so that containment is a
    # string comparison on PostgreSQL and SQLite alike; "" for names.
    first = models.CharField(max_length=32, blank=True)
    last = models.CharField(max_length=32, blank=True)
    # A network (more than one address). A column of its own, so that PostgreSQL knows from its
    # statistics how few rows the containment test has to look at.
    network = models.BooleanField(default=False)
    primary = models.BooleanField(default=False, help_text="The asset's identifier.")

    class Meta:
        ordering = ["asset", "-primary", "value"]
        verbose_name_plural = "asset aliases"
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "namespace", "value"], name="asset_alias_unique"
            )
        ]
        indexes = [
            models.Index(fields=["namespace", "key"], name="asset_alias_key"),
            models.Index(fields=["namespace", "label"], name="asset_alias_label"),
            # Addresses and networks inside a target network.
            models.Index(fields=["namespace", "first"], name="asset_alias_first"),
            # Inventoried networks, for an address inside one of them.
            models.Index(
                fields=["namespace", "first", "last"],
                condition=models.Q(network=True),
                name="asset_alias_network",
            ),
        ]

    def __str__(self) -> str:
        return self.value


class EmergencyStop(models.Model):
    """The global stop: one row. History lives in the audit log."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "engaged" if self.engaged else "off"
