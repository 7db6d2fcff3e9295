"""What an agent may ask about itself: its policy, and where to send its callbacks."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response

from soc_console.contract import RESPONSE_HEADERS, ClosedSerializer, problem_responses

from . import grammar
from .authentication import AgentPrincipal, IsAgent
from .callback_address import callback_address_problem
from .models import Criticality
from .selectors import routing_context
from .services import agent_set_callback
from .throttling import ApiKeyRateThrottle

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# A bracketed address is RFC 3986's IPv6address, an IPv4 tail (`[::ffff:93.184.216.34]`)
# included: such a URL is refused or allowed as the address it stands for, not as no URL.
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[{grammar.IPV6}\])"
# An absolute http(s) URL naming a host or an address and an optional port, with no user
# info ("" clears the callback). urlparse alone takes almost anything (and raises on a
# malformed bracketed address); the schema states this same pattern.
CALLBACK_URL_RE = re.compile(
    rf"^https?://{_HOST}(?::{_PORT})?(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?$"
)


class CallbackSerializer(ClosedSerializer):
    callback_url = serializers.CharField(
        max_length=200,
        allow_blank=True,
        trim_whitespace=False,
        validators=[
            RegexValidator(
                CALLBACK_URL_RE,
                "Must be an absolute http(s) URL naming a host and optional port, "
                "without user info.",
            )
        ],
        help_text='Where to POST signed callbacks; "" clears it.',
    )

    def validate_callback_url(self, value: str) -> str:
        if not value:
            return value
        if not CALLBACK_URL_RE.fullmatch(value):  # "$" alone would let a final newline through
            raise serializers.ValidationError("Must not end with a line break.")
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
        "shadow_version": context.shadow.version if context.shadow else None,
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


class PolicySerializer(serializers.Serializer):
    """Documents the agent's current policy as profile() shows it."""

    version = serializers.IntegerField(min_value=1)
    purpose = serializers.CharField(allow_blank=True)
    grants = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=4),
        help_text="Autonomy level per action: 0 never, 1 advisory, 2 a human approves, "
        "3 automatic above the auto threshold, 4 automatic.",
    )
    auto_threshold = serializers.FloatField(min_value=0, max_value=1)
    review_threshold = serializers.FloatField(min_value=0, max_value=1)
    scope_tiers = serializers.ListField(
        child=serializers.ChoiceField(choices=Criticality.choices),
        help_text="Criticalities it may touch; empty means all.",
    )
    scope_groups = serializers.ListField(child=serializers.CharField())
    allowed_connectors = serializers.ListField(child=serializers.CharField())
    required_evidence = serializers.ListField(child=serializers.CharField())
    escalate_after_minutes = serializers.IntegerField(min_value=0)
    expire_after_minutes = serializers.IntegerField(min_value=0)


class AgentProfileSerializer(serializers.Serializer):
    """Documents the agent's profile as profile() builds it."""

    agent = serializers.CharField(help_text="The agent's slug.")
    suspended = serializers.BooleanField()
    emergency_stop = serializers.BooleanField(help_text="Whether the emergency stop is engaged.")
    callback_url = serializers.URLField(allow_null=True)
    shadow_version = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        help_text="The policy version in shadow: it judges each proposal beside the live policy "
        "without deciding anything. null when none is.",
    )
    policy = PolicySerializer(allow_null=True, help_text="null before a policy is set.")


class CallbackSetSerializer(AgentProfileSerializer):
    callback_secret = serializers.CharField(
        allow_null=True,
        help_text="The HMAC-SHA256 key of the callbacks' signatures, shown this once; null "
        "when the callback was cleared.",
    )


@extend_schema(
    methods=["GET"],
    responses={200: AgentProfileSerializer, **problem_responses(401, 403, 429, 503)},
    parameters=RESPONSE_HEADERS,
    summary="The calling agent's current policy, suspension and callback",
)
@extend_schema(
    methods=["PUT"],
    request=CallbackSerializer,
    responses={
        200: CallbackSetSerializer,
        **problem_responses(400, 401, 403, 413, 415, 429, 503),
    },
    parameters=RESPONSE_HEADERS,
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
