"""The proposal request as the OpenAPI schema describes it: one variant per catalogue action.

The API validates a proposal with one serializer (approvals.serializers.ProposalInSerializer)
and the catalogue's target and parameter checks. The schema states the same rules per action,
so that a client generated from it (or a fuzzer) can build a valid proposal: the action's name,
the target kind it takes and the parameters it knows. Each target kind's schema accepts exactly
what the catalogue's validator accepts; tests/api/test_schema.py holds the two together.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from agents import catalogue, grammar
from soc_console.contract import (
    ClosedSerializer,
    StrictCharField,
    Variants,
)

# Per target kind: the schema of a target (not trimmed: no white space around it) and its words.
# The patterns are the grammar the canonicaliser checks every target against first.
TARGET_SCHEMAS: dict[str, dict[str, Any]] = {
    "ip": {
        "pattern": grammar.PATTERNS["ip"],
        "description": "An IPv4 or IPv6 address or CIDR network: `203.0.113.7`, "
        "`198.51.100.0/24`, `2001:db8::1`. Any spelling the system resolver reads is that "
        "address (`2130706433`, `0x7f000001`, `127.1`), and IPv4 carried in IPv6 "
        "(`::ffff:10.0.0.10`, NAT64, 6to4) is the IPv4 address; a zone id is refused, and so "
        "is a number with a leading zero (`010.0.0.10`: octal to resolvers, decimal to "
        "people), with both readings.",
    },
    "host": {
        "pattern": grammar.PATTERNS["host"],
        "description": "A host name: `ws-0142.corp.example`, `dc01`; case and a trailing dot do "
        "not matter; an internationalised name is written as its `xn--` A-labels. An address "
        "(any spelling an `ip` target takes, without a network) names the host that has it.",
    },
    "user": {
        "pattern": grammar.PATTERNS["user"],
        "description": "A user: `jdoe@corp.example`, `CORP\\jdoe`, `jdoe@CORP` or `jdoe`; a "
        "NetBIOS domain is its DNS suffix when TARGET_DOMAINS maps it.",
    },
    "mailbox": {
        "anyOf": [
            {"pattern": grammar.PATTERNS["mailbox_address"]},
            {"pattern": grammar.PATTERNS["message_id"]},
        ],
        "description": "A mailbox address or a message id: `jdoe@corp.example`, "
        "`<abc123@mail.example>`.",
    },
    "ticket": {
        "pattern": grammar.PATTERNS["ticket"],
        "description": "A ticket or alert id: `SOC-1234`, `SIEM-4821`.",
    },
}


class TargetField(StrictCharField):
    """A proposal's target as one action takes it (for the schema; the API checks it with the
    action's validator)."""

    def __init__(self, target_kind: str, **kwargs: Any) -> None:
        self.target_kind = target_kind
        super().__init__(max_length=255, **kwargs)


class TargetFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "approvals.contract.TargetField"
    priority = 1  # before the StrictCharField extension, which would match it too

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        kind = TARGET_SCHEMAS[self.target.target_kind]
        return {"type": "string", "maxLength": 255, **kind}


def _param_field(name: str, spec: catalogue.Param) -> serializers.Field:
    # Every parameter is optional.
    if spec.kind is int:
        return serializers.IntegerField(
            min_value=spec.minimum, max_value=spec.maximum, required=False
        )
    # Parameters are taken as sent: no trimming, blank allowed, NUL refused.
    return StrictCharField(
        max_length=spec.max_length, allow_blank=True, trim_whitespace=False, required=False
    )


def _with_bounds(field: serializers.Field) -> serializers.Field:
    """A list of nested objects as a ListField, whose item bounds the schema shows."""
    if isinstance(field, serializers.ListSerializer):
        return serializers.ListField(
            child=field.child.__class__(),
            max_length=field.max_length,
            min_length=field.min_length,
            required=field.required,
        )
    return field


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _variant(kind: catalogue.ActionType, common: dict[str, serializers.Field]) -> type:
    params = type(
        f"{_camel(kind.name)}Params",
        (ClosedSerializer,),
        {name: _param_field(name, spec) for name, spec in kind.params.items()},
    )
    undo = f"reversible ({kind.undo})" if kind.reversible else "irreversible"
    fields = {
        **common,
        "action": serializers.ChoiceField(
            choices=[kind.name],
            help_text=f"{kind.label}: {kind.effect.format(target='the target')} Risk "
            f"{kind.risk}, {undo}, through the {kind.connector} connector; target kind "
            f"`{kind.target_kind}`.",
        ),
        "target": TargetField(kind.target_kind),
        "params": params(required=False),
    }
    return type(
        f"{_camel(kind.name)}Proposal",
        (ClosedSerializer,),
        {**fields, "__doc__": f"A proposal to {kind.label.lower()}."},
    )


def proposal_request(base: type[serializers.Serializer]) -> Variants:
    """One variant per catalogue action, told apart by `action`; the fields every action shares
    come from the serializer the API validates with."""
    common = {
        name: _with_bounds(field)
        for name, field in base().get_fields().items()
        if name not in ("action", "target", "params")
    }
    return Variants(
        component_name="ProposalIn",
        serializers={name: _variant(kind, common) for name, kind in catalogue.ACTIONS.items()},
        resource_type_field_name="action",
        many=False,
    )
