"""What an agent may ask about itself: its policy, and where to send its callbacks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response

from .authentication import AgentPrincipal, IsAgent
from .selectors import routing_context
from .services import agent_set_callback, callback_address_problem
from .throttling import ApiKeyRateThrottle


class CallbackSerializer(serializers.Serializer):
    callback_url = serializers.CharField(max_length=200, allow_blank=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_callback_url(self, value: str) -> str:
        if not value:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise serializers.ValidationError("Must be an absolute http(s) URL.")
        problem = callback_address_problem(value, resolve=False)
        if problem:
            raise serializers.ValidationError(f"Refused: {problem}.")
        return value


def profile(principal: AgentPrincipal) -> dict[str, Any]:
    context = routing_context(principal.agent.pk)
    policy = context.policy
    return {
        "agent": context.agent.slug,
        "suspended": context.agent.suspended,
        "emergency_stop": context.emergency_stop,
        "callback_url": context.agent.callback_url or None,
        "policy": None
        if policy is None
        else {
            "version": policy.version,
            "purpose": policy.purpose,
            "grants": {g.action: g.level for g in policy.grants.all()},
            "auto_threshold": policy.auto_threshold,
            "review_threshold": policy.review_threshold,
            "scope_tiers": policy.scope_tiers,
            "scope_groups": policy.scope_groups,
            "allowed_connectors": policy.allowed_connectors,
            "required_evidence": policy.required_evidence,
            "escalate_after_minutes": policy.escalate_after_minutes,
            "expire_after_minutes": policy.expire_after_minutes,
        },
    }


@extend_schema(
    methods=["GET"],
    responses={200: inline_serializer("AgentProfile", {"agent": serializers.CharField()})},
    summary="The calling agent's current policy, suspension and callback",
)
@extend_schema(
    methods=["PUT"],
    request=CallbackSerializer,
    responses={200: inline_serializer("CallbackSet", {"callback_secret": serializers.CharField()})},
    summary="Register the callback URL; the response carries its HMAC secret, once",
)
@api_view(["GET", "PUT"])
@permission_classes([IsAgent])
@throttle_classes([ApiKeyRateThrottle])
def me(request: Request) -> Response:
    principal: AgentPrincipal = request.user
    if request.method == "GET":
        return Response(profile(principal))
    incoming = CallbackSerializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    secret = agent_set_callback(
        agent=principal.agent, url=incoming.validated_data["callback_url"], by=principal.agent.slug
    )
    return Response({**profile(principal), "callback_secret": secret or None})
