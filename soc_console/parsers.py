"""The API's JSON parser: refuses, naming the field, what the console could not store or hash
faithfully.

- nesting deeper than MAX_DEPTH (the body itself is level 1): Python's parser and everything
  after it recurse, and 1,000 levels in `params` ended in a RecursionError;
- lone UTF-16 surrogates (`"\\ud800"`) and NUL characters, in values and keys alike: neither can
  be encoded as UTF-8, PostgreSQL refuses both in jsonb and text;
- `-0.0`, NaN, ±Infinity and numbers too large for a float (`1e400`): jsonb stores `-0.0` as
  `0.0` and cannot store the others, so what the audit log hashed would differ from what it
  kept;
- bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) in any
  string or key: they reorder how text is shown, so that a rationale's "evil\\u202eexe.txt"
  reads as another file name on the console;
- a key given twice in one object (`{"target": "10.0.0.10", "target": "198.18.9.9"}`): a
  parser keeps one of the two (Python's the last, others the first), so what an agent's own
  tooling checked and what the console acted on could be different values.

Each is a 400 problem with the offending field's path in `errors` (`params.title`,
`evidence.0.ref`), before any view logic runs: nothing is recorded.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import IO, Any

from django.utils.http import parse_header_parameters
from rest_framework import exceptions
from rest_framework.parsers import JSONParser, get_encoding

from .contract import BIDI_CONTROL, bidi_control_problem

MAX_DEPTH = 20

# Strings Python's parser leaves as lone surrogates (a valid pair becomes one character), and
# NUL, which PostgreSQL's text and jsonb cannot hold.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The tokens that matter for nesting: strings (skipped whole, escapes included), brackets,
# and the separators that move along an object or an array.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)


class StrictJSONParser(JSONParser):
    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        # As sent, not as Django kept it (it drops a charset it does not know).
        _, params = parse_header_parameters(media_type or "")
        encoding = params.get("charset") or get_encoding(parser_context or {})
        try:
            utf8 = codecs.lookup(encoding).name == "utf-8"
        except LookupError:
            utf8 = False
        if not utf8:
            # JSON is UTF-8 (RFC 8259): a body in UTF-7 or EBCDIC would be checked by what it
            # decodes to here and read otherwise by an agent's own tooling.
            raise exceptions.UnsupportedMediaType(
                media_type or "application/json",
                detail=f"A JSON body is UTF-8; charset={encoding} is not accepted.",
            )
        raw = stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"The body could not be decoded: {exc}.") from exc
        # Fewer brackets than the limit cannot nest beyond it: most bodies skip the scan.
        if text.count("[") + text.count("{") > MAX_DEPTH:
            too_deep = _too_deep_at(text)
            if too_deep is not None:
                _refuse(too_deep, f"Nested deeper than {MAX_DEPTH} levels.")
        try:
            data = json.loads(
                text, parse_constant=float, parse_int=_integer, object_pairs_hook=_object
            )
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        _check_values(data)
        return data


# Python refuses to read longer integers (sys.get_int_max_str_digits); said in the API's words.
MAX_INTEGER_DIGITS = 4300


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number with more than {MAX_INTEGER_DIGITS:,} digits")
    return int(text)


class _Duplicated(dict):
    """An object in which a key was given more than once; never leaves the parser."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, marked when a key in it was given twice (json.loads would keep
    the last silently); `_check_values` refuses it with the object's path."""
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    marked = _Duplicated(value)
    marked.duplicates = []
    for key, _ in pairs:
        if key in seen:
            marked.duplicates.append(key)
        seen.add(key)
    return marked


def _field(path: list[str | int]) -> str:
    # A key may itself hold the surrogate being reported: shown escaped, the answer stays UTF-8;
    # and the bidirectional control, shown escaped so that it does not reorder the answer.
    name = ".".join(str(part) for part in path) or "body"
    name = BIDI_CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", name)
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(key: str) -> str:
    # Quoted as JSON would write it, escapes and all: a key may hold anything.
    return json.dumps(key)


def _refuse(path: list[str | int], message: str) -> None:
    raise exceptions.ValidationError({_field(path): [message]})


def _check_values(data: Any) -> None:
    """Walk the parsed body (no recursion: its depth is already bounded) for what jsonb and the
    audit hash cannot agree on."""
    stack: list[tuple[Any, list[str | int]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Duplicated):
            key = value.duplicates[0]
            _refuse([*path, key], f"The key {_shown(key)} is given more than once in one object.")
        if isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    _refuse([*path, key], "The key holds a NUL or a lone surrogate character.")
                shown = bidi_control_problem(key)
                if shown:
                    _refuse([*path, key], f"The key {shown[0].lower()}{shown[1:]}")
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
        elif isinstance(value, str):
            if _UNSTORABLE.search(value):
                _refuse(
                    path, "Must not contain NUL or lone surrogate (\\ud800-\\udfff) characters."
                )
            shown = bidi_control_problem(value)
            if shown:
                _refuse(path, shown)
        elif isinstance(value, float):
            if not math.isfinite(value):
                _refuse(path, "Must be a finite number (no NaN, Infinity or 1e400).")
            if value == 0 and math.copysign(1.0, value) < 0:
                _refuse(path, "Negative zero is not accepted; send 0.")


def _too_deep_at(text: str) -> list[str | int] | None:
    """The path of the first container nested deeper than MAX_DEPTH, read from the text without
    parsing it (the parser itself would recurse that deep); None when there is none."""
    # One frame per open container: [is_object, where we are in it (key or index)].
    frames: list[list[Any]] = []
    last_string = ""
    for match in _TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme in "[{":
            if len(frames) >= MAX_DEPTH:
                return [frame[1] for frame in frames]
            frames.append([lexeme == "{", "" if lexeme == "{" else 0])
        elif lexeme in "]}":
            if frames:
                frames.pop()
        elif lexeme == ":":
            if frames and frames[-1][0]:
                frames[-1][1] = _key(last_string)
        elif lexeme == ",":
            if frames and not frames[-1][0]:
                frames[-1][1] += 1
        else:
            last_string = lexeme
    return None


def _key(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token.strip('"')
