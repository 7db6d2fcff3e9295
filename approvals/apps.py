from __future__ import annotations

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Proposals, decisions and executions"

    def ready(self) -> None:
        from axes.signals import user_locked_out

        from .accounts import on_user_locked_out

        user_locked_out.connect(on_user_locked_out, dispatch_uid="approvals.signin_lockout")
