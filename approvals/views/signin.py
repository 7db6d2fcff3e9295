"""Signing in: the sign-in page (a password, single sign-on, or both) and the end of a sign-in
through the identity provider."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from .. import accounts
from ..oidc import REFUSAL

logger = logging.getLogger(__name__)


class ConsoleLogin(LoginView):
    """Django's sign-in form, and beside it (or, with LOCAL_LOGIN off, instead of it) the
    button that signs in through the identity provider."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        return {**context, **accounts.signin_choices(context.get("next") or "")}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_LOGIN:
            # Refused before any password is looked at, so it counts as no failed sign-in.
            context = self.get_context_data(password_off=True)
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


class OIDCCallback(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back. A refused sign-in gets a page saying why,
    and leaves nobody signed in in this browser."""

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except requests.RequestException:
            # The token or user-info call failed: the provider is down or refused the code.
            logger.warning("sign-in: the identity provider's answer failed", exc_info=True)
            return self.login_failure()

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        self.request.session.set_expiry(round(settings.OIDC_SESSION_HOURS * 3600))
        return response

    def login_failure(self) -> HttpResponse:
        request = self.request
        if request.user.is_authenticated:
            auth.logout(request)
        refusal = getattr(request, REFUSAL, None)
        if refusal is not None:
            return render(
                request,
                "registration/signin_refused.html",
                {**refusal, "provider": settings.OIDC_PROVIDER_NAME},
                status=403,
            )
        messages.error(
            request, f"Sign-in with {settings.OIDC_PROVIDER_NAME} did not complete. Try again."
        )
        return redirect(settings.LOGIN_URL)
