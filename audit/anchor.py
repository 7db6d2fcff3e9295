"""Signed checkpoints of the audit chain's head, kept outside the database.

The keyed hash stops anyone without AUDIT_KEY from rewriting events unseen, but not from
removing the newest ones, or all of them: what is left is still a valid chain. So every
AUDIT_ANCHOR_SECONDS (Celery beat) and on demand (`manage.py anchor_audit`) the head's seq and
hash are signed with AUDIT_KEY and appended to each AUDIT_ANCHOR_URL:

- `file:///path.jsonl`: one JSON line per checkpoint; verify_audit reads it back. Keep it
  where the database's administrators cannot write (another host, append-only storage).
- `syslog+tcp://host:port`: one RFC 5424 line per checkpoint, for a SIEM to keep.

verify_audit then fails when the chain is shorter than a checkpoint or differs from it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.utils import timezone

from .canonical import encode, signature, signature_matches
from .models import AuditEvent

logger = logging.getLogger(__name__)

PURPOSE = "checkpoint"
# Facility 13 (log audit), severity 6 (informational).
SYSLOG_PRIORITY = 13 * 8 + 6
SEND_TIMEOUT_SECONDS = 5.0
LOOKUP_CHUNK = 5000


class AnchorError(Exception):
    """A checkpoint could not be delivered to one or more destinations."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: datetime

    def payload(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
        }

    def line(self) -> str:
        """The checkpoint as one JSON line: its fields and their signature."""
        payload = self.payload()
        return encode({**payload, "sig": signature(PURPOSE, payload)})

    @classmethod
    def from_line(cls, line: str) -> Checkpoint | None:
        """The checkpoint a line holds, or None when it is not one signed with AUDIT_KEY."""
        try:
            fields = json.loads(line)
            checkpoint = cls(
                seq=int(fields["seq"]),
                hash=str(fields["hash"]),
                at=datetime.fromisoformat(fields["at"]),
            )
        except (ValueError, TypeError, KeyError):
            return None
        if checkpoint.payload() != {k: fields[k] for k in ("seq", "hash", "at")}:
            return None  # not in the form it was signed in
        if not signature_matches(PURPOSE, checkpoint.payload(), str(fields.get("sig", ""))):
            return None
        return checkpoint


def file_path(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def current_checkpoint() -> Checkpoint | None:
    """The last committed event as a checkpoint; None while the chain is empty."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None:
        return None
    return Checkpoint(seq=head[0], hash=head[1], at=timezone.now())


def rfc5424(*, msgid: str, at: datetime, message: str) -> bytes:
    """One RFC 5424 message, unframed: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG.

    Facility log audit, no structured data; `message` is ASCII JSON (the canonical encoder's),
    so it needs no BOM. Checkpoints and forwarded events are both written by this.
    """
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    host = "".join(c for c in socket.gethostname() if "!" <= c <= "~")[:255] or "-"
    return (
        f"<{SYSLOG_PRIORITY}>1 {stamp.replace('+00:00', 'Z')} {host} soc-console "
        f"{os.getpid()} {msgid} - {message}"
    ).encode("ascii")


def syslog_line(checkpoint: Checkpoint) -> bytes:
    """A checkpoint as an RFC 5424 message, newline-framed."""
    return rfc5424(msgid="audit-checkpoint", at=checkpoint.at, message=checkpoint.line()) + b"\n"


def _append_to_file(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write on an O_APPEND descriptor: concurrent anchors never interleave their lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (checkpoint.line() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _send_to_syslog(url: str, checkpoint: Checkpoint) -> None:
    parts = urlsplit(url)
    with socket.create_connection(
        (parts.hostname, parts.port), timeout=SEND_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(syslog_line(checkpoint))


def publish(checkpoint: Checkpoint, urls: list[str]) -> None:
    """Send the checkpoint to every destination; AnchorError names the ones that failed."""
    failed = []
    for url in urls:
        try:
            path = file_path(url)
            if path is not None:
                _append_to_file(path, checkpoint)
            elif url.startswith("syslog+tcp://"):
                _send_to_syslog(url, checkpoint)
            else:
                raise ValueError("not a file:// or syslog+tcp:// URL")
        except (OSError, ValueError) as exc:
            logger.error("audit checkpoint #%s not sent to %s: %s", checkpoint.seq, url, exc)
            failed.append(f"{url}: {exc}")
    if failed:
        raise AnchorError("; ".join(failed))


def anchor_head(urls: list[str] | None = None) -> Checkpoint | None:
    """Sign the chain's head and append it to every anchor (AUDIT_ANCHOR_URL by default)."""
    destinations = list(settings.AUDIT_ANCHOR_URL if urls is None else urls)
    if not destinations:
        raise AnchorError("no anchor: set AUDIT_ANCHOR_URL")
    checkpoint = current_checkpoint()
    if checkpoint is not None:
        publish(checkpoint, destinations)
    return checkpoint


# --- checking the chain against the file anchors ---------------------------------------------


@dataclass
class AnchorCheck:
    listed: int = 10  # problems named; all are counted
    loaded: list[Checkpoint] = field(default_factory=list)
    bad_events: int = 0
    findings: list[tuple[int | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def checkpoints(self) -> int:
        return len(self.loaded)

    def add(self, seq: int | None, problem: str, weight: int = 1) -> None:
        self.bad_events += weight
        if len(self.findings) < self.listed:
            self.findings.append((seq, problem))


def _read(path: Path, out: AnchorCheck) -> None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        out.notes.append(f"anchor {path} does not exist yet: no checkpoint to compare with")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        checkpoint = Checkpoint.from_line(line)
        if checkpoint is None:
            out.add(None, f"{path} line {number} is not a checkpoint signed with AUDIT_KEY")
        else:
            out.loaded.append(checkpoint)


def read_checkpoints(*, listed: int = 10) -> AnchorCheck:
    """Every signed checkpoint in the file anchors (lines that are not one count as bad).

    Read before the chain is walked: a checkpoint taken meanwhile could name events the walk
    started too early to see.
    """
    out = AnchorCheck(listed=listed)
    urls = list(settings.AUDIT_ANCHOR_URL)
    paths = [path for url in urls if (path := file_path(url)) is not None]
    if not paths:
        out.notes.append(
            "no file anchor (AUDIT_ANCHOR_URL): events removed from the end of the chain, or "
            "a reset chain, cannot be detected"
            if not urls
            else "checkpoints go to syslog only: compare them with the chain in the SIEM"
        )
    for path in paths:
        _read(path, out)
    return out


def _hashes_at(seqs: list[int]) -> dict[int, str]:
    stored: dict[int, str] = {}
    for start in range(0, len(seqs), LOOKUP_CHUNK):
        chunk = seqs[start : start + LOOKUP_CHUNK]
        stored.update(AuditEvent.objects.filter(seq__in=chunk).values_list("seq", "hash"))
    return stored


def compare(check: AnchorCheck, *, last_seq: int) -> None:
    """Add to `check` every checkpoint the chain, whose last event is `last_seq`, breaks."""
    if not check.loaded:
        return
    # Every checkpoint within the chain must match the event at its seq...
    within = {(c.seq, c.hash): c for c in check.loaded if c.seq <= last_seq}
    stored = _hashes_at(sorted({seq for seq, _ in within}))
    for (seq, digest), checkpoint in sorted(within.items()):
        found = stored.get(seq)
        if found == digest:
            continue
        at = checkpoint.payload()["at"]
        check.add(
            seq,
            f"event #{seq} is missing, though the checkpoint of {at} recorded it"
            if found is None
            else f"event #{seq} differs from the checkpoint of {at}: the chain was rewritten "
            "or reset after it",
        )
    # ... and the chain must reach the furthest one.
    furthest = max(check.loaded, key=lambda c: c.seq)
    if furthest.seq > last_seq:
        check.add(
            last_seq + 1,
            f"the chain ends at #{last_seq} but the checkpoint of {furthest.payload()['at']} "
            f"recorded #{furthest.seq}: events were removed from the end, or the chain was reset",
            furthest.seq - last_seq,
        )
