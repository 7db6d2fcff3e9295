"""Domain errors. The API turns them into problem+json, the console into messages."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "invalid"
    title = "Request refused"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidInput(DomainError):
    status = 400
    code = "invalid"
    title = "Invalid input"

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail, errors=errors or {})


class NotPermitted(DomainError):
    status = 403
    code = "not_permitted"
    title = "Not permitted"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class NotPending(Conflict):
    """The proposal was decided, withdrawn or expired before this request got to it."""

    code = "not_pending"
    title = "No longer pending"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different body"


class WrongState(Conflict):
    code = "wrong_state"
    title = "Not possible in the current state"


class AttentionCheckMissed(Conflict):
    """An analyst approved an attention check: nothing ran, and the detail says what the card
    got wrong."""

    code = "attention_check"
    title = "Attention check"
