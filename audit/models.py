from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One link of the hash chain.

    `hash` covers the previous event's hash and this event's canonical content, so changing,
    removing or reordering any event breaks every hash after it.
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

    @property
    def data_text(self) -> str:
        """The event's data as the export writes it: JSON, keys sorted."""
        import json

        return json.dumps(self.data, sort_keys=True, ensure_ascii=False)


class AuditHead(models.Model):
    """A single row holding the chain's tip.

    Appending locks this row, so concurrent transactions append one after another and the
    chain stays linear; the lock is released when the appending transaction commits.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"head #{self.seq}"


class VerificationRun(models.Model):
    """The outcome of each verify_audit run, shown on the audit page."""

    at = models.DateTimeField()
    ok = models.BooleanField()
    events = models.BigIntegerField()
    head_hash = models.CharField(max_length=64, blank=True)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'broken'}"
