"""Sign-in through the SOC's OpenID Connect provider (mozilla-django-oidc does the protocol).

What the console adds: the user is named by OIDC_USERNAME_CLAIM, the ID token must be meant
for this console (audience, and issuer when OIDC_OP_ISSUER is set), and the console roles are
re-computed at every sign-in from OIDC_ROLE_CLAIM through OIDC_ROLE_MAP (accounts.
signin_roles_apply). The session it starts is an ordinary Django session: the console's pages,
the decision API (SessionAuthentication, with CSRF) and the websocket (channels'
AuthMiddlewareStack) accept it as they accept a password sign-in.
"""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from soc_console import roles

from . import accounts

# Why the last sign-in on this request was refused, for the callback view's page.
REFUSAL = "soc_signin_refusal"


class ConsoleOIDCBackend(OIDCAuthenticationBackend):
    def _verify_jws(self, payload: Any, key: Any) -> dict[str, Any]:
        # The library checks the signature and the nonce only; a token the provider issued to
        # another of its clients must not sign anyone in here.
        alg = jwt.get_unverified_header(payload).get("alg")
        if alg != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"ID token signed with {alg!r}, not {self.OIDC_RP_SIGN_ALGO}")
        issuer = settings.OIDC_OP_ISSUER or None
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[alg],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=issuer,
                options={"require": ["aud", "exp", "iat"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # Some providers put the groups in the ID token only, some in the user-info answer
        # only; both came from the provider (one signed, one over its TLS), the latter wins.
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, dict):
            raise SuspiciousOperation("the provider's user info is not a JSON object")
        if userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core 5.3.2: otherwise the answer may be about someone else.
            raise SuspiciousOperation("the user info's subject is not the ID token's")
        return {**payload, **userinfo}

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(username_from(claims))

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> User | None:
        claims = self.get_userinfo(access_token, id_token, payload)
        username = username_from(claims)
        if not username:
            raise SuspiciousOperation(
                f"the provider sent no usable {settings.OIDC_USERNAME_CLAIM!r} claim"
            )
        groups = roles.claim_groups(claims.get(settings.OIDC_ROLE_CLAIM))
        email = claims.get("email")
        result = accounts.signin_roles_apply(
            username=username,
            email=email if isinstance(email, str) else "",
            roles_given=roles.from_claim(groups, settings.OIDC_ROLE_MAP),
            provider_groups=groups,
        )
        if result.user is None:
            setattr(self.request, REFUSAL, {"reason": result.refusal, "username": username})
        return result.user


def username_from(claims: dict[str, Any]) -> str:
    """The console's username for these claims, or "" when they carry none it can hold."""
    value = claims.get(settings.OIDC_USERNAME_CLAIM)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    field = User._meta.get_field("username")
    if not value or len(value) > field.max_length:
        return ""
    return value
