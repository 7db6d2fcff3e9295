"""Every audit event, at least once and in order, to the SOC's SIEM (AUDIT_FORWARD_URL).

The Procfile's `forward` process (`manage.py forward_audit`) runs one Forwarder per destination.
Each reads the events after its cursor (a ForwardCursor row) in seq order, a batch at a time,
sends them, and moves the cursor only past events the destination has accepted. After an
outage, a restart or a takeover it resumes after the cursor: events are delayed, never
dropped, and the ones sent again are the same events with the same seq and hash.

What "accepted" means depends on the protocol (HTTP Event Collector or syslog over TCP or
TLS; audit/siem.py has the destinations and their senders).

Ordering: seq order on each connection and in each POST. Appends take the chain's head under a
lock held until commit (audit/log.py), so when event n is visible every event before it is too:
reading after the cursor never skips one still being committed.

One forwarder at a time works a destination: it holds the cursor row's lease (a compare-and-set
on `holder` and `lease_until`), renews it on every round, and gives it up when it stops; a second
`forward` process waits as a standby and takes over once the lease has run out.

The forwarder shares nothing with web requests or workers but the database: a SIEM that is down
or slow delays forwarding and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Max, Q
from django.utils import timezone

from .models import AuditEvent, ForwardCursor
from .siem import SETTLE_SECONDS, DeliveryError, Destination, Sender, destinations, open_sender

logger = logging.getLogger(__name__)

# Events written but not yet counted as delivered, at most (in batches): a receiver that
# stops reading holds back the sender instead of a resend growing without end.
IN_FLIGHT_BATCHES = 8
# After a failure, wait this long before trying again, doubling up to RETRY_MAX_SECONDS.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
# A failing destination is logged at most this often.
FAILURE_LOG_SECONDS = 60.0


# --- the forwarder --------------------------------------------------------------------------


@dataclass
class InFlight:
    """A batch written on the current connection and not yet counted as delivered."""

    seq: int
    hash: str
    written_at: float


class Forwarder:
    """Forwards the audit trail to one destination. `step` is one round; `run` loops."""

    def __init__(
        self,
        destination: Destination,
        *,
        holder: str | None = None,
        batch: int | None = None,
        timeout: float | None = None,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self.destination = destination
        self.settle = settle
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch = batch or settings.AUDIT_FORWARD_BATCH
        self.timeout = timeout or settings.AUDIT_FORWARD_TIMEOUT_SECONDS
        # Long enough to outlast a round that waits out every timeout once.
        self.lease = timedelta(seconds=max(30.0, 4 * self.timeout))
        self.sender: Sender | None = None
        self.holding = False
        self.standing_by = False
        self.cursor = 0  # the last seq the destination accepted, as stored
        self.sent = 0  # the last seq written on the current connection
        self.in_flight: deque[InFlight] = deque()
        self.delivered = 0  # events counted as delivered by this forwarder
        self.resent = 0  # events written again after a failure

    # The cursor row.

    def _hold(self) -> bool:
        """Take or renew the lease on the cursor row; False while another forwarder has it."""
        name = self.destination.name
        now = timezone.now()
        if not self.holding:
            ForwardCursor.objects.get_or_create(destination=name)
        held = (
            ForwardCursor.objects.filter(destination=name)
            .filter(Q(holder=self.holder) | Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(holder=self.holder, lease_until=now + self.lease)
        )
        if not held:
            if self.holding:
                logger.warning("audit forwarding to %s: another forwarder took over", name)
                self._reset()
            elif not self.standing_by:
                logger.info(
                    "audit forwarding to %s: %s forwards it; waiting as a standby",
                    name,
                    ForwardCursor.objects.values_list("holder", flat=True).get(destination=name),
                )
            self.holding = False
            self.standing_by = True
            return False
        self.standing_by = False
        if not self.holding:
            # Taken (or taken back): start again from the stored cursor.
            self._reset()
            self.cursor = ForwardCursor.objects.values_list("seq", flat=True).get(destination=name)
            self.sent = self.cursor
            self.holding = True
            logger.info("audit forwarding to %s: resuming after #%s", name, self.cursor)
        return True

    def _advance(self, seq: int, digest: str) -> None:
        # Compare-and-set: nothing updated means another forwarder took the row meanwhile.
        moved = ForwardCursor.objects.filter(
            destination=self.destination.name, holder=self.holder, seq=self.cursor
        ).update(seq=seq, hash=digest, delivered_at=timezone.now())
        if not moved:
            self.holding = False
            self._reset()
            raise DeliveryError("the cursor moved under this forwarder: another one took over")
        self.delivered += seq - self.cursor
        self.cursor = seq

    def release(self) -> None:
        """Give the lease up, so that a standby forwarder takes over at once."""
        self._reset()
        if self.holding:
            ForwardCursor.objects.filter(
                destination=self.destination.name, holder=self.holder
            ).update(holder="", lease_until=None)
        self.holding = False

    # Sending.

    def _reset(self) -> None:
        """Drop the connection and forget what it carried: it is sent again after the cursor."""
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        self.in_flight.clear()
        if self.sent > self.cursor:
            self.resent += self.sent - self.cursor
        self.sent = self.cursor

    def _confirm(self) -> None:
        if self.sender is None or not self.in_flight:
            return
        until = self.sender.delivered_until()
        last = None
        while self.in_flight and self.in_flight[0].written_at <= until:
            last = self.in_flight.popleft()
        if last is not None:
            self._advance(last.seq, last.hash)

    def step(self) -> int:
        """One round: count what the connection delivered, then send the next batch.

        Returns how many events it wrote (0 when caught up, waiting on deliveries, or while
        another forwarder holds the destination). Raises DeliveryError or OSError when the
        destination failed; the next round starts again after the cursor.
        """
        if not self._hold():
            return 0
        try:
            if self.sender is None:
                self.sender = open_sender(
                    self.destination, timeout=self.timeout, settle=self.settle
                )
            self._confirm()
            if len(self.in_flight) >= IN_FLIGHT_BATCHES:
                return 0
            events = list(
                AuditEvent.objects.filter(seq__gt=self.sent).order_by("seq")[: self.batch]
            )
            if not events:
                return 0
            self.sender.send(events)
            self.in_flight.append(InFlight(events[-1].seq, events[-1].hash, time.monotonic()))
            self.sent = events[-1].seq
            self._confirm()
            return len(events)
        except (DeliveryError, OSError):
            self._reset()
            raise

    def drain(self, *, timeout: float = 60.0) -> int:
        """Forward every event recorded so far and wait until the destination has taken them
        all; returns the cursor. DeliveryError (or OSError) when it could not."""
        head = AuditEvent.objects.aggregate(last=Max("seq"))["last"] or 0
        deadline = time.monotonic() + timeout
        while self.cursor < head or not self.holding:
            if not self.step():
                if not self.holding:
                    raise DeliveryError("another forwarder holds this destination")
                if time.monotonic() > deadline:
                    raise DeliveryError(f"not delivered past #{self.cursor} in {timeout:.0f} s")
                time.sleep(0.05)
        return self.cursor

    def pending(self) -> bool:
        """Whether written events wait to be counted as delivered."""
        return bool(self.in_flight)

    def run(self, stop: threading.Event, *, poll: float | None = None) -> None:
        """Forward until `stop` is set: at once while there is a backlog, every `poll` seconds
        once caught up, and after a failure again and again, waiting a little longer each
        time up to RETRY_MAX_SECONDS."""
        poll = settings.AUDIT_FORWARD_POLL_SECONDS if poll is None else poll
        name = self.destination.name
        failures = 0
        failing_since = 0.0
        logged_at = 0.0
        try:
            while not stop.is_set():
                try:
                    wrote = self.step()
                except (DeliveryError, OSError, DatabaseError) as exc:
                    if isinstance(exc, DatabaseError):
                        # A dropped database connection is replaced on the next round.
                        close_old_connections()
                        connection.close_if_unusable_or_obsolete()
                    now = time.monotonic()
                    if not failures:
                        failing_since = now
                    failures += 1
                    if now - logged_at >= FAILURE_LOG_SECONDS:
                        logged_at = now
                        logger.warning(
                            "audit forwarding to %s failed (%s: %s); events wait after #%s "
                            "and are sent once it answers",
                            name,
                            type(exc).__name__,
                            exc,
                            self.cursor,
                        )
                    stop.wait(min(RETRY_FIRST_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS))
                    continue
                if failures:
                    logger.info(
                        "audit forwarding to %s works again after %.0f s; resuming after #%s",
                        name,
                        time.monotonic() - failing_since,
                        self.cursor,
                    )
                    failures = 0
                    logged_at = 0.0
                if not wrote:
                    # Caught up, or waiting for written batches to settle.
                    stop.wait(min(poll, self.settle / 2) if self.pending() else poll)
        finally:
            with contextlib.suppress(DeliveryError, OSError, DatabaseError):
                self._settle_in_flight()
            with contextlib.suppress(DatabaseError):
                self.release()

    def _settle_in_flight(self) -> None:
        """On the way out, give what was written the time to count as delivered, so that a
        forwarder that stops repeats nothing next time."""
        deadline = time.monotonic() + self.settle + 1.0
        while self.pending() and self.holding and time.monotonic() < deadline:
            self._confirm()
            time.sleep(0.05)


# --- how far behind -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lag:
    destination: str
    events: int  # events not yet delivered
    seconds: float  # age of the oldest of them (0 when none)
    delivered_seq: int = 0  # the cursor: the last event delivered
    delivered_at: datetime | None = None  # when the cursor last moved


def lag() -> list[Lag]:
    """How far each configured destination is behind the chain's head: two indexed reads per
    destination, for /metrics."""
    configured = [destination.name for destination in destinations()]
    if not configured:
        return []
    cursors = {
        name: (seq, at)
        for name, seq, at in ForwardCursor.objects.filter(destination__in=configured).values_list(
            "destination", "seq", "delivered_at"
        )
    }
    head = AuditEvent.objects.aggregate(last=Max("seq"))["last"] or 0
    now = timezone.now()
    out = []
    for name in configured:
        seq, delivered_at = cursors.get(name, (0, None))
        oldest = (
            (
                AuditEvent.objects.filter(seq__gt=seq).order_by("seq").values_list("at", flat=True)
            ).first()
            if head > seq
            else None
        )
        out.append(
            Lag(
                destination=name,
                events=max(head - seq, 0),
                seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
                delivered_seq=seq,
                delivered_at=delivered_at,
            )
        )
    return out
