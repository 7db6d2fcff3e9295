"""One proposal's page and what can be done from it: roll back, confirm a review, re-confirm a
held execution."""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import live, selectors, services
from ..models import ProposalStatus
from .common import analyst_step, console_role


@require_GET
@console_role()
def proposal_page(request: HttpRequest, proposal_id: str) -> HttpResponse:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is None:
        raise Http404("No such proposal.")
    card = selectors.card_for(proposal)
    if proposal.status == ProposalStatus.PENDING:
        card = live.in_context([card])[0]
    return render(
        request,
        "approvals/proposal.html",
        {
            "card": card,
            "proposal": proposal,
            "timeline": selectors.proposal_timeline(proposal.pk),
            "reversible": bool(card.action and card.action.reversible),
            "parameters": _parameters(proposal.params),
            # decisions are prefetched: no query. The server refuses a second decision anyway;
            # this only spares the analyst buttons that cannot work.
            "decided_by_me": any(d.analyst_id == request.user.pk for d in proposal.decisions.all()),
        },
    )


def _parameters(params: Any) -> list[tuple[str, str]]:
    """The action's parameters as name and value, each value in JSON (60, "60" and [60]
    read apart), never as a Python dict's repr."""
    if not params:
        return []
    if not isinstance(params, dict):
        return [("", json.dumps(params, ensure_ascii=False))]
    return [
        (str(key), json.dumps(value, ensure_ascii=False, sort_keys=True))
        for key, value in sorted(params.items())
    ]


rollback = analyst_step(services.rollback_request, "Rollback requested.", text="reason")
confirm_review = analyst_step(services.proposal_review_confirm, "Confirmed.", text="note")
reconfirm_held = analyst_step(services.execution_reconfirm_held, "Re-confirmed: it runs now.")
cancel_held = analyst_step(
    services.execution_cancel_held, "Cancelled: it will not run.", text="reason"
)
