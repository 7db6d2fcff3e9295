from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from approvals import services
from approvals.selectors import emergency_stop

from . import roles


def console(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "emergency_stop": emergency_stop(),
        "role_label": roles.label(user),
        "can_decide": roles.can_decide(user),
        "can_stop": roles.can_stop(user),
        "can_suspend_agent": roles.can_suspend_agent(user),
        "can_read_reports": roles.can_read_reports(user),
        "is_senior": roles.is_senior(user),
        # Rules the forms state as attributes, from the one place the server keeps them.
        "min_reason": services.MIN_REASON,
        "max_text": services.MAX_TEXT,
        "heartbeat_seconds": settings.CONSOLE_HEARTBEAT_SECONDS,
    }
