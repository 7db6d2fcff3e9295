from __future__ import annotations

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Proposals, decisions and executions"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.models import User
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import m2m_changed, post_save

        from . import sessions
        from .accounts import on_user_locked_out

        user_locked_out.connect(on_user_locked_out, dispatch_uid="approvals.signin_lockout")
        # An ended session's consoles stop streaming (approvals/sessions.py).
        user_logged_out.connect(sessions.on_user_logged_out, dispatch_uid="approvals.signout")
        post_save.connect(sessions.on_user_saved, sender=User, dispatch_uid="approvals.user_saved")
        m2m_changed.connect(
            sessions.on_user_groups_changed,
            sender=User.groups.through,
            dispatch_uid="approvals.user_groups",
        )
