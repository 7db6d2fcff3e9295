"""Open consoles belong to a session: when it ends, their sockets close.

Each console's websocket joins two channel-layer groups of its own (approvals/consumers.py):
its session's and its user's. Signing out closes the session's consoles at once; a user
deactivated, or whose roles were taken away, has each of their consoles look again at its
session (approvals.consumers re-reads it), which closes those no longer allowed. A session
that simply expires has no event: each console re-reads its own every
CONSOLE_SESSION_CHECK_SECONDS.

Only a name derived from the session key goes to Redis, never the key itself (it is the
session's bearer secret).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

from . import selectors

logger = logging.getLogger(__name__)

# The channel-layer message types the consumer handles (console_session_ended, console_recheck,
# console_user_html).
SESSION_ENDED = "console.session_ended"
RECHECK = "console.recheck"
USER_HTML = "console.user_html"


def session_group(session_key: str) -> str:
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:40]
    return f"console-session.{digest}"


def user_group(user_id: int) -> str:
    return f"console-user.{user_id}"


def _send(group: str, message_type: str, **fields: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": message_type, **fields})
    except Exception:
        # Redis away: signing out must still work. The consoles' own re-reads of their
        # session (CONSOLE_SESSION_CHECK_SECONDS) close them a little later.
        logger.warning("could not tell the consoles of %s to close", group, exc_info=True)


def consoles_close_for_session(*, session_key: str) -> None:
    """Close every console opened with this session (signed out)."""
    _send(session_group(session_key), SESSION_ENDED)


def consoles_recheck_for_user(*, user_id: int) -> None:
    """Have every console of this user read its session and roles again, once the change that
    may have taken them away has committed."""
    transaction.on_commit(lambda: _send(user_group(user_id), RECHECK))


def on_user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """django's user_logged_out: sent before the session is flushed, while its key is known."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        consoles_close_for_session(session_key=key)


def on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A user saved inactive (the admin's "active" box, for one): their consoles close."""
    if not created and not instance.is_active:
        consoles_recheck_for_user(user_id=instance.pk)


def on_user_groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """Roles are groups (soc_console/roles.py): a user who lost one may have lost the console."""
    if action not in ("post_remove", "post_clear"):
        return
    if not reverse:
        consoles_recheck_for_user(user_id=instance.pk)
        return
    # From the group's side (group.user_set.remove(...)). A clear from that side names no
    # users; those consoles find out at their next periodic re-read.
    for user_id in pk_set or ():
        consoles_recheck_for_user(user_id=user_id)


# --- what only one user's consoles are shown -----------------------------------------------


def undo_offered(analyst_id: int, proposal_id: uuid.UUID) -> None:
    """The analyst's approval is in its undo window: its toast goes to every console of theirs
    (another tab, or the console of an analyst who approved through the API), so that it can
    be undone from any of them. Run after commit (approvals.live.publish)."""
    proposal = selectors.proposal_detail(proposal_id)
    undo = selectors.undo_toast(proposal) if proposal is not None else None
    if undo is not None:
        html = render_to_string("approvals/undo_offer.html", {"undo": undo})
        _send(user_group(analyst_id), USER_HTML, html=html)


def undo_ended(analyst_id: int, proposal_id: uuid.UUID) -> None:
    """The approval was undone: its toast leaves every console of its analyst."""
    html = render_to_string("approvals/undo_gone.html", {"proposal_id": proposal_id})
    _send(user_group(analyst_id), USER_HTML, html=html)
