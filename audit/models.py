from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One link of the hash chain.

    `hash` is an HMAC under AUDIT_KEY over the previous event's hash and this event's
    canonical content (audit/log.py), so changing, removing or reordering any event breaks its
    link, and only the key's holder can hash a replacement. The chain's head is its last event.
    """

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)  # agent, user, system
    actor = models.CharField(max_length=150, db_index=True)
    event_type = models.CharField(max_length=64, db_index=True)
    proposal_id = models.UUIDField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} by {self.actor}"

    def siem_record(self) -> dict[str, object]:
        """The event as a SIEM reads it, with its place in the chain: the JSON lines export
        writes this, and the forwarder sends it (audit/forward.py)."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor_type": self.actor_type,
            "actor": self.actor,
            "event_type": self.event_type,
            "proposal_id": str(self.proposal_id) if self.proposal_id else None,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @property
    def data_text(self) -> str:
        """The event's data as the export writes it: JSON, keys sorted."""
        import json

        return json.dumps(self.data, sort_keys=True, ensure_ascii=False)


class VerificationRun(models.Model):
    """The outcome of each verify_audit run, shown on the audit page.

    `signature` is an HMAC under AUDIT_KEY over the outcome: a row that verify_audit did not
    write (an INSERT by anyone who can write the table) shows as not genuine.
    """

    at = models.DateTimeField()
    ok = models.BooleanField()
    events = models.BigIntegerField()
    head_hash = models.CharField(max_length=64, blank=True)
    bad_events = models.BigIntegerField(default=0)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    problems = models.JSONField(default=list, blank=True)  # the first few: [{seq, problem}]
    checkpoints = models.BigIntegerField(default=0)  # anchor checkpoints compared with
    seconds = models.FloatField(default=0)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'broken'}"


class ForwardCursor(models.Model):
    """How far the audit trail has reached one forwarding destination (AUDIT_FORWARD_URL).

    `seq` is the last event the destination accepted: the forwarder resumes after it, so an
    outage delays events and never drops one. One forwarder at a time works a destination: it
    holds the row's lease (`holder` until `lease_until`), renewed as it goes and taken over by
    another forwarder only once it has run out.
    """

    destination = models.CharField(max_length=255, unique=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=128, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.destination} at #{self.seq}"


class RollupKey(models.Model):
    """What a rollup row is of: a local day (or a month, by its first day), and an agent,
    action and analyst, each a name or "" for every one."""

    period = models.CharField(max_length=5)  # "day" or "month"
    day = models.DateField()
    agent = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    analyst = models.CharField(max_length=150)

    class Meta:
        abstract = True


class ReportRollup(RollupKey):
    """The reports' figures for one local day (or month) of submitted proposals, per agent,
    action and analyst, built by `audit.reports.rollup` and kept current by the workers.

    `agent`, `action` and `analyst` hold a slug, an action name and a username, or "" for
    every one: a report filtered by agent reads the row of that agent, unfiltered the row of
    "", so that no row is summed across agents (a queue's peak does not add up). Whatever
    adds up (counts, latency histograms) is summed over days. Names, not keys: the rows
    outlive nothing they describe and join nothing.
    """

    counts = models.JSONField(default=dict)
    wait = models.JSONField(default=dict)  # submission → final decision: histogram
    confidence = models.JSONField(default=dict)
    detail = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period", "day", "agent", "action", "analyst"], name="rollup_key"
            )
        ]
        indexes = [
            models.Index(fields=["agent", "action", "analyst", "period", "day"], name="rollup_read")
        ]

    def __str__(self) -> str:
        who = "/".join(part or "*" for part in (self.agent, self.action, self.analyst))
        return f"{self.period} {self.day} {who}"


class ReportRollupDay(models.Model):
    """A local day whose rollups are built: the reports read such a day from `ReportRollup`
    and compute the others from the proposals themselves. `built_at`: the rollup counts the
    proposals submitted before it (the day's end once the day is over)."""

    day = models.DateField(primary_key=True)
    built_at = models.DateTimeField()
    proposals = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day} built {self.built_at:%Y-%m-%d %H:%M}"


class ShiftRollup(RollupKey):
    """Approval fatigue for one local day (or month) of decisions given, per analyst and
    filter (`agent`, `action`: a slug and an action name, or "" for every one), as the
    summary `audit.reports.shifts` merges: the shifts that may continue into the days around
    still open, the others folded into totals, and the approval streak's runs. Built with the
    day's `ReportRollup` rows, in the same transaction, and read for the same built days."""

    summary = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period", "day", "agent", "action", "analyst"], name="shift_rollup_key"
            )
        ]
        indexes = [models.Index(fields=["agent", "action", "period", "day"], name="shift_read")]

    def __str__(self) -> str:
        who = "/".join(part or "*" for part in (self.agent, self.action))
        return f"{self.period} {self.day} {self.analyst} {who}"
