"""The provider's claims: a user's username, email and groups, as a SOC's provider sends them."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupsValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "preferred_username": user.username,
            "email": user.email,
            # Read at every sign-in: a group changed at the provider shows at the next one.
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
