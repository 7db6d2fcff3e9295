"""Several proposals decided with one reason: a selection, a duplicate group, an agent's cards;
and several auto-approved actions confirmed with one note.

Nothing here decides anything itself: each proposal goes through proposal_approve or
proposal_reject in its own transaction, with its own decision and audit event, so every rule
(the two-person rule, a senior for a critical asset, a suspended agent, already decided) is
checked per proposal exactly as for a single card. One refusal does not undo the others: the
summary says what was done and what was refused, with the reason each time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db.models import Exists, OuterRef, Subquery

from agents import catalogue
from audit.models import AuditEvent
from soc_console.errors import DomainError, InvalidInput, NotPermitted, WrongState

from .. import selectors
from ..models import Proposal, ProposalStatus, Verdict
from .decisions import APPROVAL_UNDONE, proposal_approve, proposal_reject, proposal_review_confirm
from .shared import check_may_decide, reason_given, text

# One request decides at most this many: a page of the queue and then some. A larger batch
# would hold the request (each proposal is its own transaction) for longer than a click should.
MAX_BULK = 500


@dataclass(frozen=True)
class BulkItem:
    proposal_id: str
    what: str  # "Isolate host web-prod03", for the summary
    status: str = ""  # the proposal's status after the attempt ("approved", "pending", …)
    refusal: str = ""  # why it was refused, in the words a single decision would have used
    code: str = ""  # the refusal's machine-readable code


@dataclass
class BulkSummary:
    verdict: str
    done: list[BulkItem] = field(default_factory=list)
    refused: list[BulkItem] = field(default_factory=list)
    # A duplicate group's proposals that arrived after the analyst's page read the group: not
    # decided, since nobody saw them; they stay pending.
    newer: int = 0

    @property
    def total(self) -> int:
        return len(self.done) + len(self.refused)

    @property
    def awaiting_another(self) -> int:
        """Approvals recorded that do not yet let the action run (a critical asset's first)."""
        return sum(1 for item in self.done if item.status == ProposalStatus.PENDING)

    @property
    def newer_text(self) -> str:
        return newer_text(self.newer) if self.newer else ""

    def as_text(self) -> str:
        verb = "Approved" if self.verdict == Verdict.APPROVE else "Rejected"
        parts = [f"{verb} {len(self.done)} of {self.total}."]
        if self.awaiting_another:
            parts.append(f"{self.awaiting_another} of them still need another approval.")
        if self.newer:
            parts.append(self.newer_text)
        if self.refused:
            parts.append(f"Refused {len(self.refused)}:")
            parts.extend(f"{item.what}: {item.refusal}" for item in self.refused)
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "done": [vars(item) for item in self.done],
            "refused": [vars(item) for item in self.refused],
            "newer": self.newer,
        }


def newer_text(newer: int) -> str:
    one = newer == 1
    return (
        f"{newer} newer {'proposal' if one else 'proposals'} of the group "
        f"arrived after your page showed it; {'it stays' if one else 'they stay'} pending."
    )


def _ids(raw: Any) -> list[str]:
    """The selection, de-duplicated in its order; anything that is not a proposal id is a 400
    before anything is decided."""
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidInput(
            "Select at least one proposal.", errors={"proposals": ["Select at least one."]}
        )
    seen: dict[str, None] = {}
    for value in raw:
        try:
            seen[str(uuid.UUID(str(value)))] = None
        except ValueError:
            raise InvalidInput(
                f"{str(value)[:64]!r} is not a proposal id.",
                errors={"proposals": ["Not a proposal id."]},
            ) from None
    return _at_most(list(seen))


def _at_most(ids: list[str]) -> list[str]:
    if len(ids) > MAX_BULK:
        raise InvalidInput(
            f"{len(ids)} proposals selected; at most {MAX_BULK} are decided at once.",
            errors={"proposals": [f"At most {MAX_BULK}."]},
        )
    return ids


def _label(proposal: Proposal | None, proposal_id: str) -> str:
    if proposal is None:
        return f"proposal {proposal_id[:8]}"
    kind = catalogue.get(proposal.action)
    return f"{kind.label if kind else proposal.action} {proposal.target}"


def _verdict_reason(verdict: str, reason: str) -> str:
    """The reason as recorded; checked once, before any decision, so that bad input changes
    nothing."""
    if verdict not in (Verdict.APPROVE, Verdict.REJECT):
        raise InvalidInput("Choose approve or reject.", errors={"verdict": ["approve or reject"]})
    if verdict == Verdict.REJECT:
        return reason_given(
            reason,
            refusal="A rejection needs a reason.",
            hint="Say why you reject them.",
        )
    return text(reason, field="reason")


def proposals_decide_bulk(
    *,
    proposal_ids: Any,
    analyst: AbstractBaseUser,
    verdict: str,
    reason: str = "",
) -> BulkSummary:
    """Approve or reject each selected proposal, one transaction each, with the same reason.

    Called outside any transaction (as the views do), each decision commits on its own and
    its execution is enqueued at once. (Inside one, each is a savepoint: a refusal still rolls
    back only its own proposal, but nothing leaves before the outer commit.)
    """
    check_may_decide(analyst)
    reason = _verdict_reason(verdict, reason)
    return _decide_each(_ids(proposal_ids), analyst=analyst, verdict=verdict, reason=reason)


def proposals_decide_group(
    *,
    group: str,
    analyst: AbstractBaseUser,
    verdict: str,
    reason: str = "",
) -> BulkSummary:
    """Approve or reject a duplicate group as the analyst's page showed it.

    `group` is the group's form token (selectors.group_token): its action, its canonical
    target and the audit log's head when the page read the group. The group is resolved here:
    the proposals of that action and target that are pending now and were pending then
    (submitted at or before the stamp, not brought back to pending by an undo since), each
    decided as proposals_decide_bulk decides one, under its own row lock. A proposal that
    arrived after the page read the group is never decided by it: it stays pending, and the
    summary counts it. A token the console did not render, or one whose group has nothing
    left that the page showed, is refused and nothing changes.
    """
    check_may_decide(analyst)
    reason = _verdict_reason(verdict, reason)
    action, target, stamp = _group_of(group)
    seen, newer = _group_members(action, target, stamp)
    if not seen:
        kind = catalogue.get(action)
        raise WrongState(
            f"Nothing is left to decide of the group {kind.label if kind else action} {target} "
            "as your page showed it: its proposals were decided or closed since."
            + (f" {newer_text(newer)}" if newer else "")
            + " Reload the queue to see what is pending now.",
            code="group_gone",
        )
    summary = _decide_each(_at_most(seen), analyst=analyst, verdict=verdict, reason=reason)
    summary.newer = newer
    return summary


def _group_of(token: Any) -> tuple[str, str, int]:
    try:
        action, target, stamp = selectors.group_of_token(str(token or ""))
    except signing.BadSignature:
        raise InvalidInput(
            "This group decision does not name a group the console showed; reload the queue "
            "and decide the group from its card.",
            errors={"group": ["Not a group of the queue."]},
        ) from None
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    if stamp > head:
        # Only a database restored or reset since the page was read has a head behind it.
        raise InvalidInput(
            "This group decision comes from a page older than the queue's records; reload the "
            "queue and decide the group from its card.",
            errors={"group": ["From an outdated page."]},
        )
    return action, target, stamp


def _group_members(action: str, target: str, stamp: int) -> tuple[list[str], int]:
    """The group's pending proposals the page read (in the queue's order) and how many newer.

    A proposal's first audit event (its submission) takes its seq in the submitting
    transaction, in commit order: at or below the stamp, it was committed, and counted, when
    the page read the group; above it, it came later. An undo after the stamp brought back one
    that was approved then, which the page did not count either."""
    events = AuditEvent.objects.filter(proposal_id=OuterRef("pk"))
    rows = (
        Proposal.objects.filter(
            status=ProposalStatus.PENDING, action=action, target_canonical=target
        )
        .annotate(submitted=Subquery(events.order_by("seq").values("seq")[:1]))
        .annotate(
            back=Exists(events.filter(event_type=APPROVAL_UNDONE, seq__gt=stamp)),
        )
        .order_by(*selectors.QUEUE_ORDER)
        .values_list("id", "submitted", "back")
    )
    seen, newer = [], 0
    for pk, submitted, back in rows:
        if submitted is not None and submitted <= stamp and not back:
            seen.append(str(pk))
        else:
            newer += 1
    return seen, newer


def _decide_each(
    ids: list[str], *, analyst: AbstractBaseUser, verdict: str, reason: str
) -> BulkSummary:
    labels = {
        str(p.pk): p for p in Proposal.objects.filter(pk__in=ids).only("id", "action", "target")
    }
    decide = proposal_approve if verdict == Verdict.APPROVE else proposal_reject
    summary = BulkSummary(verdict=verdict)
    for proposal_id in ids:
        what = _label(labels.get(proposal_id), proposal_id)
        try:
            decided = decide(proposal_id=proposal_id, analyst=analyst, reason=reason)
        except DomainError as exc:
            summary.refused.append(
                BulkItem(proposal_id=proposal_id, what=what, refusal=exc.detail, code=exc.code)
            )
            continue
        summary.done.append(BulkItem(proposal_id=proposal_id, what=what, status=decided.status))
    return summary


# How many proposals one bulk confirmation may name: the work list shows at most 200 rows.
REVIEW_CONFIRM_LIMIT = 500


@dataclass(frozen=True)
class Refusal:
    proposal_id: str
    what: str  # the action and target, as the list showed them
    why: str


@dataclass(frozen=True)
class ReviewSummary:
    confirmed: list[str]
    refused: list[Refusal]


def proposals_review_confirm(
    *, proposal_ids: Iterable[Any], analyst: AbstractBaseUser, note: str = ""
) -> ReviewSummary:
    """Confirm several actions that ran without approval in one go.

    Each is its own proposal_review_confirm, in its own transaction with its own audit event,
    so one that cannot be confirmed (already confirmed by someone else, not auto-approved)
    is refused with its reason and the others are confirmed all the same. The ids are read
    first: a malformed list changes nothing.
    """
    check_may_decide(analyst)
    note = text(note, field="note")
    ids: list[str] = []
    for raw in proposal_ids:
        try:
            key = str(uuid.UUID(str(raw)))
        except ValueError as exc:
            raise InvalidInput(
                f"{str(raw)[:60]!r} is not a proposal id.",
                errors={"proposal": ["Pick proposals from the list."]},
            ) from exc
        if key not in ids:
            ids.append(key)
    if not ids:
        raise InvalidInput(
            "No proposal was selected.", errors={"proposal": ["Select at least one."]}
        )
    if len(ids) > REVIEW_CONFIRM_LIMIT:
        raise InvalidInput(
            f"{len(ids)} proposals at once; the limit is {REVIEW_CONFIRM_LIMIT}.",
            errors={"proposal": [f"At most {REVIEW_CONFIRM_LIMIT}."]},
        )
    labels = {
        str(p.pk): f"{p.action_label} {p.target}"
        for p in Proposal.objects.filter(pk__in=ids).only("id", "action", "target")
    }
    confirmed: list[str] = []
    refused: list[Refusal] = []
    for key in ids:
        try:
            proposal_review_confirm(proposal_id=key, analyst=analyst, note=note)
        except NotPermitted:
            raise  # the analyst's role changed mid-way: stop, as for the first one
        except DomainError as exc:
            refused.append(Refusal(key, labels.get(key, key), exc.detail))
        else:
            confirmed.append(key)
    return ReviewSummary(confirmed, refused)
