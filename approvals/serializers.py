"""The API's serializers: what an agent may send (checked field by field, closed to unknown
fields) and what every answer holds. The OpenAPI schema is generated from these, and
tests/api/test_schema.py holds every answer to it."""

from __future__ import annotations

import math
import re
from typing import Any

from rest_framework import serializers

from agents import catalogue
from agents.models import Criticality
from agents.routing import Outcome
from soc_console.contract import (
    ClosedSerializer,
    ProblemSerializer,
    StrictCharField,
    Variants,
    json_kind,
)

from .models import ExecutionStatus, ProposalStatus, Verdict
from .services import MAX_TEXT, MIN_REASON, short_reason

MAX_RATIONALE = 4000
MAX_EVIDENCE_ITEMS = 25
MAX_EVIDENCE_TEXT = 500
MAX_IDEMPOTENCY_KEY = 128
EVIDENCE_KEYS = {"kind", "ref", "url", "note"}
PAGE_RE = re.compile(r"[1-9][0-9]*")


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError(
                f"Must be a number between 0 and 1, not {json_kind(data)}."
            )
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
    # Not trimmed: the schema's grammar allows no white space around a target, and the API
    # refuses what the schema refuses (agents/catalogue.py says so in the error).
    target = StrictCharField(
        max_length=255, trim_whitespace=False, help_text="Validated per action."
    )
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
            except catalogue.ParamsError as exc:
                errors.update({path: [problem] for path, problem in exc.errors.items()})
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
        "did), with the criticality the target was judged at; null when none did, and the "
        "criticality is then UNKNOWN_ASSET_CRITICALITY. A target that may be more than the "
        "asset (a wider network, a longer host name) is judged at least at "
        "UNKNOWN_ASSET_CRITICALITY, and its asset's criticality here says so.",
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
        reason = attrs["reason"].strip()
        if attrs["verdict"] == "reject" and len(reason) < MIN_REASON:
            refusal = short_reason("A rejection needs a reason.", reason)
            raise serializers.ValidationError({"reason": [refusal]})
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
