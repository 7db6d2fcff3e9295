"""Where a live card goes on the queue page: the server keeps the page in order, not the
browser. A card that enters the page comes with the cards it goes before and the ones it
pushes below the page; a card that leaves brings up the ones that move onto the page."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import selectors
from .models import Proposal, ProposalStatus

# How many of the cards after a card it names: the first of them on a console's page is the
# one it goes before. More than one, because updates from several processes can arrive out of
# commit order: a card rendered after its neighbour's commit may reach a page before that
# neighbour does. For the same reason a card that enters the page deletes this many below it,
# and a card that leaves brings up this many (a console inserts only those it lacks).
NEIGHBOURS = 3


@dataclass(frozen=True)
class Placement:
    """Where a pending proposal's card goes on the queue page, in the queue's order."""

    off_page: bool  # below the page: no console shows it
    before: list[str] = field(default_factory=list)  # ids of the next cards, in order
    below: list[str] = field(default_factory=list)  # ids now just below the page


@dataclass(frozen=True)
class Fill:
    """A card that moved up onto the page when another left it."""

    card: selectors.Card
    before: list[str]


def placement_of(proposal: Proposal, ahead: int) -> Placement:
    """Below the page when a page's worth of cards come before it; otherwise two indexed
    reads: the cards after this one, and the first cards below the page.

    `ahead` is the number of pending cards before this one, counted up to a page's worth
    (selectors.proposal_progress_ahead, which a new card's live update asks with its progress).
    In a storm most new cards land below the page on that count alone; counted up to a page
    and in no order it stops early under the plans PostgreSQL takes without statistics, where
    the ordered reads below may sort every pending proposal (10.6 ms against 0.4 ms at 5,300
    pending, never analysed).
    """
    if ahead >= settings.QUEUE_PAGE_SIZE:
        return Placement(off_page=True)
    pending = Proposal.objects.filter(status=ProposalStatus.PENDING).order_by(
        *selectors.QUEUE_ORDER
    )
    edge = list(
        pending.values_list("id", "priority", "created_at")[
            settings.QUEUE_PAGE_SIZE : settings.QUEUE_PAGE_SIZE + NEIGHBOURS
        ]
    )
    key = (-proposal.priority, proposal.created_at)
    if edge and (proposal.pk in {row[0] for row in edge} or key >= (-edge[0][1], edge[0][2])):
        return Placement(off_page=True)
    after = pending.filter(
        Q(priority__lt=proposal.priority)
        | Q(priority=proposal.priority, created_at__gt=proposal.created_at)
    ).values_list("id", flat=True)[:NEIGHBOURS]
    return Placement(
        off_page=False, before=[str(pk) for pk in after], below=[str(row[0]) for row in edge]
    )


def fills() -> list[Fill]:
    """The last cards of the page, once a card has left it: they may have just moved up."""
    page = settings.QUEUE_PAGE_SIZE
    start = max(page - NEIGHBOURS, 0)
    ids = list(
        Proposal.objects.filter(status=ProposalStatus.PENDING)
        .order_by(*selectors.QUEUE_ORDER)
        .values_list("id", flat=True)[start:page]
    )
    if len(ids) < page - start:
        return []  # the whole queue fits on the page: nothing moved up onto it
    rows = {p.pk: p for p in selectors.proposals_with_details().filter(pk__in=ids)}
    now = timezone.now()
    return [
        Fill(card=selectors.card_for(rows[pk], now), before=[str(i) for i in ids[n + 1 :]])
        for n, pk in enumerate(ids)
        if pk in rows
    ]
