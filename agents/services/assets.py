"""The asset inventory: entries and the other names they are known by, saved canonical."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from audit import log

from .. import targets
from ..models import Asset, AssetAlias


class AssetError(ValueError):
    """An inventory entry that cannot be saved; `field` says which of its parts is wrong."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def asset_names(
    *, kind: str, identifier: str, aliases: Iterable[str] = ()
) -> list[targets.Identity]:
    """The canonical identities of an asset's identifier (first) and its other names."""
    try:
        names = [targets.of_asset(kind, identifier)]
    except targets.TargetError as exc:
        raise AssetError(f"The identifier {exc}.", field="identifier") from exc
    for alias in aliases:
        try:
            identity = targets.of_asset(kind, alias, alias=True)
        except targets.TargetError as exc:
            raise AssetError(f"The alias {alias!r} {exc}.", field="aliases") from exc
        if all((identity.namespace, identity.value) != (n.namespace, n.value) for n in names):
            names.append(identity)
    return names


@transaction.atomic
def asset_save(*, asset: Asset, by: str, aliases: Iterable[str] | None = None) -> Asset:
    """Add or change an inventory entry and the other names it is known by (None keeps them).

    Names are stored canonical, so that every spelling of a target finds them. Criticality
    decides the two-person rule, so every change is audited with what it was before.
    """
    before = None
    before_aliases: list[str] = []
    if asset.pk:
        before = Asset.objects.filter(pk=asset.pk).values().first()
        before_aliases = list(
            AssetAlias.objects.filter(asset_id=asset.pk, primary=False).values_list(
                "value", flat=True
            )
        )
    names = asset_names(
        kind=asset.kind,
        identifier=asset.identifier,
        aliases=before_aliases if aliases is None else aliases,
    )
    asset.identifier = names[0].value
    asset.save()
    AssetAlias.objects.filter(asset=asset).delete()
    AssetAlias.objects.bulk_create(
        AssetAlias(asset=asset, primary=n == 0, **targets.alias_columns(identity))
        for n, identity in enumerate(names)
    )
    log.record(
        event_type="asset.saved",
        actor=by,
        data={
            "kind": asset.kind,
            "identifier": asset.identifier,
            "aliases": [identity.value for identity in names[1:]],
            "criticality": asset.criticality,
            "group": asset.group,
            "before": before
            and {
                **{k: before[k] for k in ("identifier", "criticality", "group")},
                "aliases": before_aliases,
            },
        },
    )
    return asset


@transaction.atomic
def asset_delete(*, asset: Asset, by: str) -> None:
    log.record(
        event_type="asset.deleted",
        actor=by,
        data={"kind": asset.kind, "identifier": asset.identifier, "criticality": asset.criticality},
    )
    asset.delete()


def aliases_rematch(alias_model: type[AssetAlias] = AssetAlias) -> int:
    """Store every inventory name's matching columns as the canonicaliser reads the name today;
    returns how many rows changed.

    The canonicaliser learns spellings (look-alike letters, A-label local parts), and a name
    keeps the key it was stored with: a target spelled the newer way would miss it until the
    asset is saved again. A migration that teaches the canonicaliser calls this (with its
    historical model). A name that no longer reads (an identifier stored before identifiers
    were checked) stays as it is; one that now reads as another name of the same asset goes.
    """
    changed: list[AssetAlias] = []
    duplicates: list[int] = []
    seen: set[tuple[int, str, str]] = set()
    rows = alias_model.objects.select_related("asset").order_by("asset_id", "-primary", "pk")
    for alias in rows.iterator(chunk_size=500):
        try:
            identity = targets.of_asset(alias.asset.kind, alias.value, alias=not alias.primary)
            columns = targets.alias_columns(identity)
        except targets.TargetError:
            columns = {}
        name = (
            alias.asset_id,
            columns.get("namespace", alias.namespace),
            columns.get("value", alias.value),
        )
        if name in seen:
            duplicates.append(alias.pk)
            continue
        seen.add(name)
        if any(getattr(alias, field) != value for field, value in columns.items()):
            for field, value in columns.items():
                setattr(alias, field, value)
            changed.append(alias)
    with transaction.atomic():
        alias_model.objects.filter(pk__in=duplicates).delete()
        alias_model.objects.bulk_update(changed, fields=list(REMATCHED), batch_size=500)
    return len(changed) + len(duplicates)


# The columns aliases_rematch writes: all that targets.alias_columns computes.
REMATCHED = ("namespace", "value", "key", "label", "first", "last", "network")
