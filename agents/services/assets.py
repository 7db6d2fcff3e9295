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
