"""Live updates: after a service commits, render the changed pieces and push them to every
open console over the channel layer. The htmx ws extension swaps them in out-of-band."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from . import selectors

logger = logging.getLogger(__name__)

GROUP = "console"


def send_html(html: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "console.html", "html": html})
    except Exception:
        # A Redis outage must not undo or fail a committed change; browsers re-fetch the
        # queue when their socket reconnects.
        logger.warning("live update not sent", exc_info=True)


def proposal_changed(proposal_id: uuid.UUID) -> None:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is None:
        return
    context: dict[str, Any] = {
        "card": selectors.card_for(proposal),
        "proposal": proposal,
        "counters": selectors.queue_counters(),
    }
    send_html(render_to_string("approvals/live.html", context))


def stop_changed() -> None:
    send_html(
        render_to_string(
            "approvals/stop.html",
            # The control goes to everyone; pages without one (analysts') drop it unswapped,
            # and the server refuses the stop to anyone who is not a manager or admin.
            {"emergency_stop": selectors.emergency_stop(), "oob": True, "can_stop": True},
        )
    )
