"""Agents' API keys: issued (the raw key shown once) and revoked."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit import log

from .. import keys
from ..models import Agent, ApiKey


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str


@transaction.atomic
def apikey_issue(*, agent: Agent, by: str, label: str = "") -> IssuedKey:
    raw, prefix, digest = keys.generate()
    key = ApiKey.objects.create(agent=agent, prefix=prefix, digest=digest, label=label)
    log.record(
        event_type="apikey.issued",
        actor=by,
        data={"agent": agent.slug, "prefix": prefix, "label": label},
    )
    return IssuedKey(key=key, raw=raw)


@transaction.atomic
def apikey_revoke(*, key: ApiKey, by: str) -> bool:
    """Revoke a key; False when it was already revoked (nothing changes, nothing is logged)."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        return False
    log.record(
        event_type="apikey.revoked",
        actor=by,
        data={"agent": key.agent.slug, "prefix": key.prefix},
    )
    return True
