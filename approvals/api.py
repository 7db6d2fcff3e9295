"""The agent API and the analysts' decision API (DESIGN §11). Views are thin: validate, call a
service, shape the answer."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from django.db import DatabaseError
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.fields import empty
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from agents.authentication import AgentPrincipal, IsAgent
from agents.throttling import ApiKeyRateThrottle
from soc_console import roles
from soc_console.contract import (
    RESPONSE_HEADERS,
    problem_responses,
)
from soc_console.errors import InvalidInput, NotFound, NotPermitted
from soc_console.problems import problem

from . import contract, selectors, services
from .models import Proposal, ProposalStatus
from .serializers import (
    DECISION_REQUEST,
    MAX_IDEMPOTENCY_KEY,
    PAGE_RE,
    BlockedProblemSerializer,
    DecisionInSerializer,
    ProposalInSerializer,
    ProposalOutSerializer,
    ProposalPageSerializer,
    RollbackInSerializer,
)

logger = logging.getLogger(__name__)


class IsAnalyst(BasePermission):
    audience = "analysts"  # the schema lists an analyst's token and session for these calls
    message = (
        "Only analysts, senior analysts and admins decide proposals and roll back actions; "
        "an agent's API key cannot."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.user, AgentPrincipal):
            return False
        if roles.can_decide(request.user):
            return True
        # A manager, say: the refusal speaks of their account, not of an API key.
        self.message = (
            "Only analysts, senior analysts and admins decide proposals and roll back "
            "actions; this account has none of those roles."
        )
        return False


def _analyst_call(
    *, request: Any, ok: int, problems: tuple[int, ...], summary: str, description: str
) -> Callable[[Callable[..., Response]], Any]:
    """An analyst's POST on one proposal, answered with the proposal: its schema, the POST-only
    view, the analyst permission."""

    def wrap(view: Callable[..., Response]) -> Any:
        schema = extend_schema(
            request=request,
            responses={ok: ProposalOutSerializer, **problem_responses(*problems)},
            parameters=RESPONSE_HEADERS,
            summary=summary,
            description=description,
        )
        return schema(api_view(["POST"])(permission_classes([IsAnalyst])(view)))

    return wrap


def request_hash(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@cache
def _body_defaults() -> dict[str, Any]:
    """The submission's fields that have a default, with it (the serializer's, read once)."""
    return {
        name: field.get_default()
        for name, field in ProposalInSerializer().fields.items()
        if not field.required and field.default is not empty
    }


def _request_hashes(body: dict[str, Any], target: str) -> dict[str, Any]:
    """The submission's request hash, over the body as the API reads it: two spellings of one
    target are one request, and so are a body that leaves a field to its default and one that
    spells the default out (`"severity": "medium"`, `"params": {}`, `"evidence": []`). With it,
    the hash of the body as sent, which versions before this one stored: a retry of a request
    first sent before an upgrade is still its replay."""
    as_sent = {**body, "target": target}
    return {
        "request_hash": request_hash({"evidence": [], **_body_defaults(), **as_sent}),
        "earlier_hashes": (request_hash(as_sent),),
    }


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


LIST_PARAMETERS = ("status", "page")


def _check_list_query(request: Request) -> None:
    """The list's query as the schema states it: only its parameters, each once, a known
    status, a page number. (DRF would take the last of repeated values, `?status=` as no filter and
    `?page=last`: all answers the schema does not promise.)"""
    query = request.query_params
    errors = {name: ["Give this parameter once."] for name in query if len(query.getlist(name)) > 1}
    # A misspelt or invented filter (?agent=, ?page_size=) would otherwise list everything.
    for name in sorted(set(query) - set(LIST_PARAMETERS)):
        errors[name] = [f"Unknown parameter: the list takes {' and '.join(LIST_PARAMETERS)}."]
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
        **_request_hashes(request.data, data["identity"].value),
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
        if proposal.agent_id != user.agent.pk or proposal.synthetic:
            raise Http404  # another agent's proposal does not exist, as far as this one knows
    elif not roles.can_view_console(user):
        raise NotPermitted("Your account has no console role.")
    return proposal


def _analyst_body(
    request: Request, proposal_id: str, serializer: type[Serializer]
) -> dict[str, Any]:
    """An analyst's request about a proposal they can see, its body checked by `serializer`."""
    _visible_proposal(request, proposal_id)
    incoming = serializer(data=request.data)
    incoming.is_valid(raise_exception=True)
    return incoming.validated_data


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


@_analyst_call(
    request=DECISION_REQUEST,
    ok=201,
    problems=(400, 401, 403, 404, 409, 413, 415),
    summary="Approve or reject a pending proposal (analysts; session or token)",
    description="403 when this analyst may not decide it (a critical asset's last approval "
    "needs a senior analyst; nobody decides twice); 409 when it is no longer pending.",
)
def proposal_decide(request: Request, proposal_id: str) -> Response:
    body = _analyst_body(request, proposal_id, DecisionInSerializer)
    decide = services.proposal_approve if body["verdict"] == "approve" else services.proposal_reject
    decided = decide(proposal_id=proposal_id, analyst=request.user, reason=body["reason"])
    return Response(_committed_payload(decided), status=status.HTTP_201_CREATED)


@_analyst_call(
    request=None,
    ok=200,
    problems=(401, 403, 404, 409),
    summary="Undo your approval within its undo window, before it runs (analysts)",
    description="409 (`undo_window_over`) when the window is over or the action has started; "
    "403 (`not_your_approval`) when the approval that let it run is another analyst's.",
)
def approval_undo(request: Request, proposal_id: str) -> Response:
    _visible_proposal(request, proposal_id)
    services.approval_undo(proposal_id=proposal_id, analyst=request.user)
    return Response(selectors.proposal_payload(selectors.proposal_detail(proposal_id)))


@_analyst_call(
    request=RollbackInSerializer,
    ok=202,
    problems=(400, 401, 403, 404, 409, 413, 415),
    summary="Roll back a succeeded, reversible execution (analysts)",
    description="409 when there is nothing to roll back: no execution, an irreversible "
    "action, an execution that has not succeeded, or the emergency stop engaged.",
)
def proposal_rollback(request: Request, proposal_id: str) -> Response:
    body = _analyst_body(request, proposal_id, RollbackInSerializer)
    services.rollback_request(proposal_id=proposal_id, analyst=request.user, reason=body["reason"])
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
