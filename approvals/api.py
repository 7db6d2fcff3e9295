"""The agent API and the analysts' decision API (DESIGN §11). Views are thin: validate, call a
service, shape the answer."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from agents.authentication import AgentPrincipal, IsAgent
from agents.throttling import ApiKeyRateThrottle
from soc_console import roles
from soc_console.errors import InvalidInput, NotFound, NotPermitted
from soc_console.problems import problem

from . import catalogue, selectors, services
from .models import ProposalStatus, Severity

MAX_RATIONALE = 4000
MAX_EVIDENCE_ITEMS = 25
MAX_EVIDENCE_TEXT = 500
MAX_IDEMPOTENCY_KEY = 128
EVIDENCE_KEYS = {"kind", "ref", "url", "note"}


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of converting them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError("Must be a number between 0 and 1, not a string.")
        if not math.isfinite(float(data)):
            raise serializers.ValidationError("Must be a finite number.")
        return super().to_internal_value(data)


def _unknown_fields(data: Any, allowed: Any) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        return {}
    return {name: ["Unknown field."] for name in sorted(set(data) - set(allowed))}


class EvidenceSerializer(serializers.Serializer):
    kind = StrictCharField(max_length=40)
    ref = StrictCharField(max_length=MAX_EVIDENCE_TEXT)
    url = StrictCharField(max_length=MAX_EVIDENCE_TEXT, required=False)
    note = StrictCharField(max_length=MAX_EVIDENCE_TEXT, required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = _unknown_fields(data, self.fields)
        if unknown:
            raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)


class ProposalInSerializer(serializers.Serializer):
    action = StrictCharField(max_length=64, help_text="An action from the catalogue.")
    target = StrictCharField(max_length=255, help_text="Validated per action.")
    params = serializers.DictField(required=False, default=dict)
    confidence = StrictFloatField(min_value=0.0, max_value=1.0)
    rationale = StrictCharField(max_length=MAX_RATIONALE, allow_blank=False)
    evidence = EvidenceSerializer(many=True, required=False, max_length=MAX_EVIDENCE_ITEMS)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False, default="medium")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Report every problem at once: unknown fields, field errors and the target check."""
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["The body must be a JSON object."]}
            )
        errors: dict[str, Any] = _unknown_fields(data, self.fields)
        value: dict[str, Any] = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
        action = data.get("action")
        kind = catalogue.get(action) if isinstance(action, str) else None
        if kind is None and isinstance(action, str) and "action" not in errors:
            errors["action"] = [
                f"Unknown action {action!r}. Known actions: {', '.join(sorted(catalogue.ACTIONS))}."
            ]
        if kind is not None and "target" not in errors:
            try:
                value["target"] = kind.clean_target(data.get("target"))
            except catalogue.TargetError as exc:
                errors["target"] = [f"For {kind.name} the target {exc}."]
        if kind is not None and "params" not in errors:
            try:
                value["params"] = kind.clean_params(data.get("params"))
            except catalogue.TargetError as exc:
                errors["params"] = [str(exc)]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class ProposalOutSerializer(serializers.Serializer):
    """Documents the proposal as responses show it (built by selectors.proposal_payload)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ProposalStatus.choices)
    code = serializers.CharField(allow_null=True)
    explanation = serializers.CharField()
    agent = serializers.CharField()
    action = serializers.CharField()
    target = serializers.CharField()
    params = serializers.DictField()
    confidence = serializers.FloatField()
    rationale = serializers.CharField()
    evidence = EvidenceSerializer(many=True)
    severity = serializers.CharField()
    criticality = serializers.CharField()
    required_approvals = serializers.IntegerField()
    approvals = serializers.IntegerField()
    policy_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    decisions = inline_serializer(
        "DecisionOut",
        {
            "verdict": serializers.CharField(),
            "reason": serializers.CharField(),
            "analyst": serializers.CharField(),
            "at": serializers.DateTimeField(),
        },
        many=True,
    )
    execution = inline_serializer(
        "ExecutionOut",
        {
            "id": serializers.UUIDField(),
            "status": serializers.CharField(),
            "attempts": serializers.IntegerField(),
            "not_before": serializers.DateTimeField(allow_null=True),
            "result": serializers.JSONField(allow_null=True),
            "error": serializers.CharField(allow_null=True),
            "updated_at": serializers.DateTimeField(),
        },
        allow_null=True,
    )
    url = serializers.URLField()
    console_url = serializers.URLField()


class DecisionInSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["approve", "reject"])
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = _unknown_fields(data, self.fields)
        if unknown:
            raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["verdict"] == "reject" and len(attrs["reason"].strip()) < 3:
            raise serializers.ValidationError({"reason": ["A rejection needs a reason."]})
        return attrs


class IsAnalyst(BasePermission):
    message = (
        "Only analysts, senior analysts and admins decide proposals and roll back actions; "
        "an agent's API key cannot."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        return not isinstance(request.user, AgentPrincipal) and roles.can_decide(request.user)


def request_hash(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


# The problem's title by block code: the stop and a suspension are not the policy's doing.
BLOCKED_TITLES = {
    "emergency_stop": "Emergency stop engaged",
    "agent_suspended": "Agent suspended",
}


def _blocked_response(payload: dict[str, Any]) -> Response:
    return problem(
        status_code=403,
        title=BLOCKED_TITLES.get(payload["code"], "Proposal outside policy"),
        detail=f"Blocked: {payload['explanation']}. The proposal was recorded as blocked.",
        code=payload["code"],
        proposal=payload,
    )


def _check_body_size(request: Request) -> None:
    length = request.META.get("CONTENT_LENGTH") or "0"
    try:
        size = int(length)
    except ValueError:
        size = 0
    size = max(size, len(request.body))
    if size > settings.API_MAX_BODY_BYTES:
        raise InvalidInput(
            f"The body is {size} bytes; the limit is {settings.API_MAX_BODY_BYTES}.",
            errors={"body": [f"At most {settings.API_MAX_BODY_BYTES} bytes."]},
        )


@extend_schema(
    methods=["POST"],
    request=ProposalInSerializer,
    responses={
        200: ProposalOutSerializer,
        201: ProposalOutSerializer,
        400: OpenApiTypes.OBJECT,
        403: OpenApiTypes.OBJECT,
        409: OpenApiTypes.OBJECT,
        429: OpenApiTypes.OBJECT,
    },
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Same key and body again returns the first proposal.",
        )
    ],
    summary="Propose an action",
)
@extend_schema(
    methods=["GET"],
    responses={200: ProposalOutSerializer(many=True)},
    parameters=[OpenApiParameter("status", str, enum=[s for s, _ in ProposalStatus.choices])],
    summary="List the calling agent's own proposals, newest first",
)
@api_view(["GET", "POST"])
@permission_classes([IsAgent])
@throttle_classes([ApiKeyRateThrottle])
def proposals(request: Request) -> Response:
    principal: AgentPrincipal = request.user
    if request.method == "GET":
        wanted = request.query_params.get("status") or None
        if wanted and wanted not in ProposalStatus.values:
            raise InvalidInput(
                f"Unknown status {wanted!r}.",
                errors={"status": [f"One of: {', '.join(ProposalStatus.values)}."]},
            )
        from rest_framework.pagination import PageNumberPagination

        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.agent_proposals(agent_id=principal.agent.pk, status=wanted), request
        )
        return paginator.get_paginated_response([selectors.proposal_payload(p) for p in page or []])

    _check_body_size(request)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and (len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable()):
        raise InvalidInput(
            "The Idempotency-Key header is too long or not printable.",
            errors={"Idempotency-Key": [f"At most {MAX_IDEMPOTENCY_KEY} printable characters."]},
        )
    incoming = ProposalInSerializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    data = incoming.validated_data
    submission = services.proposal_submit(
        agent=principal.agent,
        api_key=principal.key,
        action=data["action"],
        target=data["target"],
        params=data["params"],
        confidence=data["confidence"],
        rationale=data["rationale"],
        evidence=[dict(item) for item in data.get("evidence", [])],
        severity=data["severity"],
        idempotency_key=key,
        request_hash=request_hash(request.data),
    )
    # A new proposal has no decisions yet: answer from the row in hand, without a re-read.
    proposal = (
        submission.proposal
        if submission.created
        else selectors.proposal_detail(submission.proposal.pk)
    )
    payload = selectors.proposal_payload(proposal)
    if submission.proposal.status == ProposalStatus.BLOCKED and submission.created:
        return _blocked_response(payload)
    # A replay (same key, same body) is 200 with the proposal as recorded, blocked or not.
    return Response(payload, status=status.HTTP_201_CREATED if submission.created else 200)


def _visible_proposal(request: Request, proposal_id: str) -> Any:
    proposal = selectors.proposal_detail(proposal_id)
    if proposal is None:
        raise Http404
    user = request.user
    if isinstance(user, AgentPrincipal):
        if proposal.agent_id != user.agent.pk:
            raise Http404  # another agent's proposal does not exist, as far as this one knows
    elif not roles.can_view_console(user):
        raise NotPermitted("Your account has no console role.")
    return proposal


@extend_schema(
    responses={200: ProposalOutSerializer, 404: OpenApiTypes.OBJECT},
    summary="One proposal, with its decisions and execution",
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
@throttle_classes([ApiKeyRateThrottle])
def proposal_detail(request: Request, proposal_id: str) -> Response:
    return Response(selectors.proposal_payload(_visible_proposal(request, proposal_id)))


@extend_schema(
    request=None,
    responses={200: ProposalOutSerializer, 409: OpenApiTypes.OBJECT},
    summary="Withdraw a pending proposal",
)
@api_view(["POST"])
@permission_classes([IsAgent])
@throttle_classes([ApiKeyRateThrottle])
def proposal_withdraw(request: Request, proposal_id: str) -> Response:
    principal: AgentPrincipal = request.user
    _visible_proposal(request, proposal_id)
    try:
        services.proposal_withdraw(proposal_id=proposal_id, agent=principal.agent)
    except NotFound as exc:
        raise Http404 from exc
    return Response(selectors.proposal_payload(selectors.proposal_detail(proposal_id)))


@extend_schema(
    request=DecisionInSerializer,
    responses={201: ProposalOutSerializer, 403: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    summary="Approve or reject a pending proposal (analysts; session or token)",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def proposal_decide(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    incoming = DecisionInSerializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    verdict = incoming.validated_data["verdict"]
    reason = incoming.validated_data["reason"]
    if verdict == "approve":
        services.proposal_approve(proposal_id=proposal_id, analyst=request.user, reason=reason)
    else:
        services.proposal_reject(proposal_id=proposal_id, analyst=request.user, reason=reason)
    payload = selectors.proposal_payload(selectors.proposal_detail(proposal_id))
    return Response(payload, status=status.HTTP_201_CREATED)


@extend_schema(
    request=None,
    responses={200: ProposalOutSerializer, 403: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    summary="Undo your approval within its undo window, before it runs (analysts)",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def approval_undo(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    services.approval_undo(proposal_id=proposal_id, analyst=request.user)
    return Response(selectors.proposal_payload(selectors.proposal_detail(proposal_id)))


@extend_schema(
    request=inline_serializer("RollbackIn", {"reason": serializers.CharField(required=False)}),
    responses={202: ProposalOutSerializer, 409: OpenApiTypes.OBJECT},
    summary="Roll back a succeeded, reversible execution (analysts)",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def proposal_rollback(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
    services.rollback_request(proposal_id=proposal_id, analyst=request.user, reason=str(reason))
    payload = selectors.proposal_payload(selectors.proposal_detail(proposal_id))
    return Response(payload, status=status.HTTP_202_ACCEPTED)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@permission_classes([])
@authentication_classes([])
def not_found(request: Request) -> Response:
    return problem(
        status_code=404,
        title="Not found",
        detail=f"No API endpoint at {request.path}. See /api/v1/docs/.",
        code="not_found",
    )
