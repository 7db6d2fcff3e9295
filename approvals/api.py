"""The agent API and the analysts' decision API (DESIGN §11). Views are thin: validate, call a
service, shape the answer."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import Any

from django.db import DatabaseError
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
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

from agents import catalogue
from agents.authentication import AgentPrincipal, IsAgent
from agents.models import Criticality
from agents.routing import Outcome
from agents.throttling import ApiKeyRateThrottle
from soc_console import roles
from soc_console.contract import (
    RESPONSE_HEADERS,
    ClosedSerializer,
    ProblemSerializer,
    StrictCharField,
    Variants,
    problem_responses,
)
from soc_console.errors import InvalidInput, NotFound, NotPermitted
from soc_console.problems import problem

from . import contract, selectors, services
from .models import ExecutionStatus, Proposal, ProposalStatus, Verdict
from .services import MAX_TEXT, MIN_REASON

logger = logging.getLogger(__name__)

MAX_RATIONALE = 4000
MAX_EVIDENCE_ITEMS = 25
MAX_EVIDENCE_TEXT = 500
MAX_IDEMPOTENCY_KEY = 128
EVIDENCE_KEYS = {"kind", "ref", "url", "note"}
PAGE_RE = re.compile(r"[1-9][0-9]*")


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError("Must be a number between 0 and 1, not a string.")
        try:
            finite = math.isfinite(float(data))
        except OverflowError:  # an integer with hundreds of digits
            finite = False
        if not finite:
            raise serializers.ValidationError("Must be a finite number between 0 and 1.")
        return super().to_internal_value(data)


def _unknown_fields(data: Any, allowed: Any) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        return {}
    return {name: ["Unknown field."] for name in sorted(set(data) - set(allowed))}


class EvidenceSerializer(ClosedSerializer):
    kind = StrictCharField(max_length=40)
    ref = StrictCharField(max_length=MAX_EVIDENCE_TEXT)
    url = StrictCharField(max_length=MAX_EVIDENCE_TEXT, required=False)
    note = StrictCharField(max_length=MAX_EVIDENCE_TEXT, required=False)


class ProposalInSerializer(serializers.Serializer):
    action = StrictCharField(max_length=64, help_text="An action from the catalogue.")
    target = StrictCharField(max_length=255, help_text="Validated per action.")
    params = serializers.DictField(required=False, default=dict)
    confidence = StrictFloatField(min_value=0.0, max_value=1.0)
    rationale = StrictCharField(max_length=MAX_RATIONALE, allow_blank=False)
    evidence = EvidenceSerializer(many=True, required=False, max_length=MAX_EVIDENCE_ITEMS)
    severity = serializers.ChoiceField(
        choices=Criticality.choices, required=False, default="medium"
    )

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
            # Kept as written; judged, hashed and executed as its canonical identity.
            try:
                value["identity"] = kind.clean_target(data.get("target"))
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


class DecisionOutSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    reason = serializers.CharField(allow_blank=True)
    analyst = serializers.CharField(help_text="The analyst's username.")
    at = serializers.DateTimeField()


class ExecutionOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ExecutionStatus.choices)
    attempts = serializers.IntegerField(min_value=0)
    not_before = serializers.DateTimeField(
        allow_null=True,
        help_text="An analyst's approval may be undone until then; the action runs after it.",
    )
    result = serializers.JSONField(allow_null=True, help_text="What the connector reported.")
    error = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField()


class MatchedAssetSerializer(serializers.Serializer):
    identifier = serializers.CharField(help_text="The asset's identifier in the inventory.")
    criticality = serializers.ChoiceField(
        choices=Criticality.choices, help_text="Its criticality when the proposal was judged."
    )


class RoutingSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=[o.value for o in Outcome],
        help_text="Where routing sent the proposal; `status` moves on from `pending`.",
    )
    code = serializers.CharField(
        allow_null=True,
        help_text="Why it was blocked (the 403 `code`), or `budget_exhausted` when it would "
        "have run at once but its grant's blast-radius budget for the hour was spent, so it "
        "went to `pending`; null otherwise.",
    )
    reason = serializers.CharField(
        allow_blank=True,
        help_text="The routing, in words; it begins with `budget_exhausted:` when that sent "
        "the proposal to a human.",
    )
    policy_version = serializers.IntegerField(allow_null=True, min_value=1)
    shadow_version = serializers.IntegerField(
        allow_null=True, help_text="The shadow policy that also judged it; null: none did."
    )


class ProposalOutSerializer(serializers.Serializer):
    """Documents the proposal as responses show it (built by selectors.proposal_payload)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ProposalStatus.choices)
    code = serializers.CharField(
        allow_null=True, help_text="Why it was blocked (`blocked` only); null otherwise."
    )
    explanation = serializers.CharField(allow_blank=True, help_text="The routing, in words.")
    agent = serializers.CharField(help_text="The proposing agent's slug.")
    action = serializers.ChoiceField(choices=sorted(catalogue.ACTIONS))
    target = serializers.CharField(help_text="The target as the agent wrote it.")
    target_canonical = serializers.CharField(
        help_text="The one identity the target names: what was routed, matched to the "
        "inventory and acted on (an IPv4 address carried in IPv6 or spelled as a number as "
        "that address, a host route as its address, names in lower case without the root "
        "dot, CORP\\user as user@dns.suffix when TARGET_DOMAINS maps CORP)."
    )
    asset = MatchedAssetSerializer(
        allow_null=True,
        help_text="The inventoried asset the target matched (the most critical when several "
        "did); null when none did, and the criticality is then UNKNOWN_ASSET_CRITICALITY.",
    )
    routing = RoutingSerializer(help_text="How the guardrails judged the proposal on arrival.")
    params = serializers.DictField()
    confidence = serializers.FloatField(min_value=0, max_value=1)
    rationale = serializers.CharField(allow_blank=True)
    evidence = EvidenceSerializer(many=True)
    severity = serializers.ChoiceField(choices=Criticality.choices)
    criticality = serializers.ChoiceField(choices=Criticality.choices)
    required_approvals = serializers.IntegerField(min_value=0)
    approvals = serializers.IntegerField(min_value=0)
    policy_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When a pending proposal expires; null when it does not."
    )
    decisions = DecisionOutSerializer(many=True)
    execution = ExecutionOutSerializer(
        allow_null=True, help_text="null until the proposal is approved (or auto-approved)."
    )
    url = serializers.URLField()
    console_url = serializers.URLField()


class ProposalPageSerializer(serializers.Serializer):
    """The proposals list's page: the count of all matches and links to the pages around."""

    count = serializers.IntegerField(min_value=0)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ProposalOutSerializer(many=True)


class BlockedProblemSerializer(ProblemSerializer):
    proposal = ProposalOutSerializer(
        required=False, help_text="The proposal as recorded (status `blocked`)."
    )


class DecisionInSerializer(ClosedSerializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    reason = StrictCharField(max_length=MAX_TEXT, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["verdict"] == "reject" and len(attrs["reason"].strip()) < MIN_REASON:
            raise serializers.ValidationError({"reason": ["A rejection needs a reason."]})
        return attrs


class ApproveInSerializer(ClosedSerializer):
    verdict = serializers.ChoiceField(choices=[Verdict.APPROVE.value])
    reason = StrictCharField(max_length=MAX_TEXT, required=False, allow_blank=True)


class RejectInSerializer(ClosedSerializer):
    verdict = serializers.ChoiceField(choices=[Verdict.REJECT.value])
    reason = StrictCharField(max_length=MAX_TEXT, min_length=MIN_REASON, help_text="Required.")


# The decision as the schema states it: a rejection needs a reason of MIN_REASON characters.
DECISION_REQUEST = Variants(
    component_name="DecisionIn",
    serializers={"approve": ApproveInSerializer, "reject": RejectInSerializer},
    resource_type_field_name="verdict",
    many=False,
)


class RollbackInSerializer(ClosedSerializer):
    reason = StrictCharField(
        max_length=MAX_TEXT,
        min_length=MIN_REASON,
        help_text="Why: undoing containment is a decision, and its reason goes on record.",
    )


class IsAnalyst(BasePermission):
    audience = "analysts"  # the schema lists an analyst's token and session for these calls
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


def _check_list_query(request: Request) -> None:
    """The list's query as the schema states it: each parameter once, a known status, a page
    number. (DRF would take the last of repeated values, `?status=` as no filter and
    `?page=last`: all answers the schema does not promise.)"""
    query = request.query_params
    errors = {name: ["Give this parameter once."] for name in query if len(query.getlist(name)) > 1}
    wanted = query.get("status")
    if "status" not in errors and wanted is not None and wanted not in ProposalStatus.values:
        errors["status"] = [f"One of: {', '.join(ProposalStatus.values)}."]
    page = query.get("page")
    if "page" not in errors and page is not None and not PAGE_RE.fullmatch(page):
        errors["page"] = ["A page number: 1, 2, …"]
    if errors:
        raise InvalidInput(
            f"The query has invalid parameters: {', '.join(sorted(errors))}.", errors=errors
        )


def _committed_payload(written: Proposal) -> dict[str, Any]:
    """The proposal a service just committed, as it stands now, or, when it cannot be read
    back (the database went away after the commit), as that service's transaction wrote it.

    The change stands either way; answering an error would have the client retry it and be
    told it was already decided.
    """
    try:
        return selectors.proposal_payload(selectors.proposal_detail(written.pk))
    except DatabaseError:
        logger.warning(
            "proposal %s committed but could not be read back; answered from the written copy",
            written.pk,
            exc_info=True,
        )
        return selectors.proposal_payload(written)


@extend_schema(
    methods=["POST"],
    request=contract.proposal_request(ProposalInSerializer),
    responses={
        201: OpenApiResponse(
            ProposalOutSerializer, description="Recorded; `status` says how it was routed."
        ),
        200: OpenApiResponse(
            ProposalOutSerializer,
            description="A replay: the same "
            "Idempotency-Key and body again; the proposal as first recorded.",
        ),
        **problem_responses(
            400, 401, 403, 409, 413, 415, 429, 503, status_403=BlockedProblemSerializer
        ),
    },
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            {
                "type": "string",
                "maxLength": MAX_IDEMPOTENCY_KEY,
                # Printable: no control characters, no-break space or soft hyphen (a header
                # arrives as Latin-1).
                "pattern": r"^[^\x00-\x1f\x7f-\xa0\xad]*$",
            },
            OpenApiParameter.HEADER,
            description="Same key and body again returns the first proposal (200); the same "
            "key with another body is 409. Printable characters only.",
        ),
        *RESPONSE_HEADERS,
    ],
    summary="Propose an action",
    description="The body's `action` names a catalogue action; each action takes one kind of "
    "target and its own `params` (see the variants). A proposal outside the agent's policy is "
    "recorded as `blocked` and answered with 403, its `code` saying why (`action_not_permitted`, "
    "`target_out_of_scope`, `evidence_required`, `agent_suspended`, `emergency_stop`).",
)
@extend_schema(
    methods=["GET"],
    responses={
        200: ProposalPageSerializer,
        **problem_responses(400, 401, 403, 404, 429, 503),
    },
    parameters=[
        OpenApiParameter("status", str, enum=[s for s, _ in ProposalStatus.choices]),
        OpenApiParameter(
            "page",
            {"type": "integer", "minimum": 1},
            description="1-based; a page past the last is 404.",
        ),
        *RESPONSE_HEADERS,
    ],
    operation_id="proposals_list",
    summary="List the calling agent's own proposals, newest first",
)
@api_view(["GET", "POST"])
@permission_classes([IsAgent])
@throttle_classes([ApiKeyRateThrottle])
def proposals(request: Request) -> Response:
    principal: AgentPrincipal = request.user
    if request.method == "GET":
        _check_list_query(request)
        wanted = request.query_params.get("status")
        from rest_framework.pagination import PageNumberPagination

        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.agent_proposals(agent_id=principal.agent.pk, status=wanted), request
        )
        return paginator.get_paginated_response([selectors.proposal_payload(p) for p in page or []])

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
        # Two spellings of one target are one request.
        request_hash=request_hash({**request.data, "target": data["identity"].value}),
        identity=data["identity"],
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
    responses={200: ProposalOutSerializer, **problem_responses(401, 403, 404, 429, 503)},
    parameters=RESPONSE_HEADERS,
    summary="One proposal, with its decisions and execution",
    description="An agent sees its own proposals only (another agent's is 404); an analyst "
    "sees any.",
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
@throttle_classes([ApiKeyRateThrottle])
def proposal_detail(request: Request, proposal_id: str) -> Response:
    return Response(selectors.proposal_payload(_visible_proposal(request, proposal_id)))


@extend_schema(
    request=None,
    responses={
        200: ProposalOutSerializer,
        **problem_responses(401, 403, 404, 409, 413, 429, 503),
    },
    parameters=RESPONSE_HEADERS,
    summary="Withdraw a pending proposal",
)
@api_view(["POST"])
@permission_classes([IsAgent])
@throttle_classes([ApiKeyRateThrottle])
def proposal_withdraw(request: Request, proposal_id: str) -> Response:
    principal: AgentPrincipal = request.user
    _visible_proposal(request, proposal_id)
    try:
        withdrawn = services.proposal_withdraw(proposal_id=proposal_id, agent=principal.agent)
    except NotFound as exc:
        raise Http404 from exc
    return Response(_committed_payload(withdrawn))


@extend_schema(
    request=DECISION_REQUEST,
    responses={
        201: ProposalOutSerializer,
        **problem_responses(400, 401, 403, 404, 409, 413, 415),
    },
    parameters=RESPONSE_HEADERS,
    summary="Approve or reject a pending proposal (analysts; session or token)",
    description="403 when this analyst may not decide it (a critical asset's last approval "
    "needs a senior analyst; nobody decides twice); 409 when it is no longer pending.",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def proposal_decide(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    incoming = DecisionInSerializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    verdict = incoming.validated_data["verdict"]
    reason = incoming.validated_data["reason"]
    decide = services.proposal_approve if verdict == "approve" else services.proposal_reject
    decided = decide(proposal_id=proposal_id, analyst=request.user, reason=reason)
    return Response(_committed_payload(decided), status=status.HTTP_201_CREATED)


@extend_schema(
    request=None,
    responses={
        200: ProposalOutSerializer,
        **problem_responses(401, 403, 404, 409),
    },
    parameters=RESPONSE_HEADERS,
    summary="Undo your approval within its undo window, before it runs (analysts)",
    description="409 (`undo_window_over`) when the window is over or the action has started; "
    "403 (`not_your_approval`) when the approval that let it run is another analyst's.",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def approval_undo(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    services.approval_undo(proposal_id=proposal_id, analyst=request.user)
    return Response(selectors.proposal_payload(selectors.proposal_detail(proposal_id)))


@extend_schema(
    request=RollbackInSerializer,
    responses={
        202: ProposalOutSerializer,
        **problem_responses(400, 401, 403, 404, 409, 413, 415),
    },
    parameters=RESPONSE_HEADERS,
    summary="Roll back a succeeded, reversible execution (analysts)",
    description="409 when there is nothing to roll back: no execution, an irreversible "
    "action, an execution that has not succeeded, or the emergency stop engaged.",
)
@api_view(["POST"])
@permission_classes([IsAnalyst])
def proposal_rollback(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    incoming = RollbackInSerializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    services.rollback_request(
        proposal_id=proposal_id, analyst=request.user, reason=incoming.validated_data["reason"]
    )
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
