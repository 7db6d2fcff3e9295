"""What the API promises about its inputs and errors, stated once for the code and the schema.

A request object that refuses unknown fields, a string that refuses NUL characters,
bidirectional controls and blank values: each is a serializer or field here with the
drf-spectacular extension that writes the same rule into the OpenAPI schema, so that a
schema-driven client (or fuzzer) produces what the API accepts and nothing else. The problem
body every error answers with is documented here too.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.serializers import PolymorphicProxySerializerExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers

PROBLEM_MEDIA_TYPE = "application/problem+json"

# The characters str.strip() removes (Python's str.isspace()), spelled out: a schema's `\s`
# is ECMAScript's, which differs at \x1c-\x1f, \x85 and \ufeff.
WHITESPACE_CLASS = (
    r"\t\n\x0b\x0c\r\x1c-\x1f\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)


# Unicode's bidirectional controls (its Bidi_Control property): the Arabic letter mark, the
# left-to-right and right-to-left marks, embeddings, overrides and isolates. Each reorders how
# the text around it is shown, so that a rationale's `evil\u202eexe.txt` reads "evil" +
# "txt.exe" on the console; none belongs in what an agent writes for an analyst to read.
BIDI_CONTROL_CLASS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
BIDI_CONTROL = re.compile(f"[{BIDI_CONTROL_CLASS}]")


def bidi_control_problem(text: str) -> str | None:
    """Why `text` is refused for holding a bidirectional control (naming the first one's code
    point), or None."""
    found = BIDI_CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    return (
        f"Must not contain bidirectional control characters (U+{ord(char):04X} "
        f"{unicodedata.name(char)}): they reorder how the text around them is shown."
    )


def text_pattern(*, min_length: int = 0) -> str:
    """A string without NUL or bidirectional controls whose length once trimmed is at least
    min_length."""
    anything = rf"[^\x00{BIDI_CONTROL_CLASS}]"
    solid = rf"[^\x00{BIDI_CONTROL_CLASS}{WHITESPACE_CLASS}]"
    if min_length <= 0:
        return rf"^{anything}*$"
    if min_length == 1:
        return rf"^{anything}*{solid}{anything}*$"
    return rf"^{anything}*{solid}{anything}{{{min_length - 2},}}{solid}{anything}*$"


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words for an error message ("not a boolean"); a number
    as written."""
    # bool before the numbers: True is an int to Python and a boolean to the agent who sent it.
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of converting them, and
    bidirectional controls."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        problem = bidi_control_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class ClosedSerializer(serializers.Serializer):
    """A request object that names every unknown field as an error instead of ignoring it."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """The schema says what the field refuses: NUL and bidirectional controls anywhere, blank
    (or too short) once trimmed.

    DRF trims before it checks blankness and lengths, so the minimum is a pattern over the
    trimmed text; a plain minLength would count the spaces.
    """

    target_class = "soc_console.contract.StrictCharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        field = self.target
        schema = auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        minimum = max(int(field.min_length or 0), 0 if field.allow_blank else 1)
        schema.pop("minLength", None)
        schema["pattern"] = text_pattern(min_length=minimum)
        return schema


class ClosedSerializerSchema(OpenApiSerializerExtension):
    target_class = "soc_console.contract.ClosedSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class Variants(PolymorphicProxySerializer):
    """A request body that is one of several objects, told apart by a field it must carry."""


class VariantsSchema(PolymorphicProxySerializerExtension):
    target_class = "soc_console.contract.Variants"
    priority = 0

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = super().map_serializer(auto_schema, direction)
        # Without it the schema would allow an empty body (and call the body optional).
        schema["required"] = [self.target.resource_type_field_name]
        return schema


class ProblemSerializer(serializers.Serializer):
    """Documents the body of every error answer (RFC 9457), as soc_console.problems builds it."""

    type = serializers.URLField(help_text="Identifies the kind of problem; ends with `code`.")
    title = serializers.CharField()
    status = serializers.IntegerField(help_text="The HTTP status, repeated.")
    detail = serializers.CharField(help_text="What was wrong, in words a person can act on.")
    code = serializers.CharField(
        help_text="Machine-readable: `invalid`, `not_found`, `not_pending`, "
        "`idempotency_key_reused`, `rate_limited`, a block code, …"
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Invalid input only: messages per field (`evidence.0.ref`, `body`, …).",
    )
    status_now = serializers.CharField(
        required=False, help_text="409 `not_pending` only: the proposal's status now."
    )


# What each status means, the same on every operation that can answer it.
PROBLEM_DESCRIPTIONS = {
    400: "Invalid input: `errors` names each field. Nothing was recorded.",
    401: "Missing, unknown or revoked credentials.",
    403: "These credentials may not do this.",
    404: "No such resource, or not one these credentials may see.",
    409: "Not possible in the resource's current state.",
    413: "The body is over `API_MAX_BODY_BYTES`; refused before authentication.",
    415: "The body is not `application/json`.",
    429: "Over this API key's rate limit; `Retry-After` says when to try again.",
    503: "A dependency (Redis) is down; nothing was done. Retry after `Retry-After` seconds.",
}

RESPONSE_HEADERS = [
    OpenApiParameter(
        "Retry-After",
        int,
        OpenApiParameter.HEADER,
        response=[429, 503],
        required=True,
        description="Seconds to wait before the next request.",
    ),
    OpenApiParameter(
        "WWW-Authenticate",
        str,
        OpenApiParameter.HEADER,
        response=[401],
        required=True,
        description="The scheme to authenticate with.",
    ),
]


def problem_responses(*codes: int, **bodies: Any) -> dict[Any, OpenApiResponse]:
    """Responses for the given error statuses, each an application/problem+json body.

    A status can carry its own body serializer as `status_403=...` (a blocked proposal's 403
    carries the proposal).
    """
    return {
        (code, PROBLEM_MEDIA_TYPE): OpenApiResponse(
            bodies.get(f"status_{code}", ProblemSerializer),
            description=PROBLEM_DESCRIPTIONS[code],
        )
        for code in codes
    }
