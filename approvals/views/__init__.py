"""The analysts' console: thin views over selectors (reads) and services (changes), one module
per page family."""

from __future__ import annotations

from .agents import (
    agent_clear,
    agent_suspend,
    agents_page,
    emergency_stop,
)
from .common import console_role
from .lists import (
    acknowledge_execution,
    advisory_page,
    blocked_page,
    confirm_review_bulk,
    retry_execution,
    work_lists,
)
from .proposals import (
    cancel_held,
    confirm_review,
    proposal_page,
    reconfirm_held,
    rollback,
)
from .queue import (
    bulk_decide,
    decide,
    queue,
    stop_banner,
    undo_approval,
)
from .shadow import shadow_discard, shadow_page, shadow_promote, shadow_start

__all__ = [
    "acknowledge_execution",
    "advisory_page",
    "agent_clear",
    "agent_suspend",
    "agents_page",
    "blocked_page",
    "bulk_decide",
    "confirm_review",
    "confirm_review_bulk",
    "console_role",
    "decide",
    "emergency_stop",
    "proposal_page",
    "queue",
    "reconfirm_held",
    "cancel_held",
    "retry_execution",
    "rollback",
    "shadow_discard",
    "shadow_page",
    "shadow_promote",
    "shadow_start",
    "stop_banner",
    "undo_approval",
    "work_lists",
]
