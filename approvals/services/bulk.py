"""Several pending proposals decided with one reason: a selection, a duplicate group, an agent's
cards.

Nothing here decides anything itself: each proposal goes through proposal_approve or
proposal_reject in its own transaction, with its own decision and audit event, so every rule
(the two-person rule, a senior for a critical asset, a suspended agent, already decided) is
checked per proposal exactly as for a single card. One refusal does not undo the others: the
summary says what was done and what was refused, with the reason each time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from agents import catalogue
from soc_console.errors import DomainError, InvalidInput

from ..models import Proposal, ProposalStatus, Verdict
from .decisions import proposal_approve, proposal_reject
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

    @property
    def total(self) -> int:
        return len(self.done) + len(self.refused)

    @property
    def awaiting_another(self) -> int:
        """Approvals recorded that do not yet let the action run (a critical asset's first)."""
        return sum(1 for item in self.done if item.status == ProposalStatus.PENDING)

    def as_text(self) -> str:
        verb = "Approved" if self.verdict == Verdict.APPROVE else "Rejected"
        parts = [f"{verb} {len(self.done)} of {self.total}."]
        if self.awaiting_another:
            parts.append(f"{self.awaiting_another} of them still need another approval.")
        if self.refused:
            parts.append(f"Refused {len(self.refused)}:")
            parts.extend(f"{item.what}: {item.refusal}" for item in self.refused)
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "done": [vars(item) for item in self.done],
            "refused": [vars(item) for item in self.refused],
        }


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
    if len(seen) > MAX_BULK:
        raise InvalidInput(
            f"{len(seen)} proposals selected; at most {MAX_BULK} are decided at once.",
            errors={"proposals": [f"At most {MAX_BULK}."]},
        )
    return list(seen)


def _label(proposal: Proposal | None, proposal_id: str) -> str:
    if proposal is None:
        return f"proposal {proposal_id[:8]}"
    kind = catalogue.get(proposal.action)
    return f"{kind.label if kind else proposal.action} {proposal.target}"


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
    if verdict not in (Verdict.APPROVE, Verdict.REJECT):
        raise InvalidInput("Choose approve or reject.", errors={"verdict": ["approve or reject"]})
    # The reason is checked once, before any decision, so that bad input changes nothing.
    if verdict == Verdict.REJECT:
        reason = reason_given(
            reason,
            refusal="A rejection needs a reason.",
            hint="Say why you reject them.",
        )
    else:
        reason = text(reason, field="reason")
    ids = _ids(proposal_ids)
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
