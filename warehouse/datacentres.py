"""The data-centre registry: where each site is, who runs it, whether it is public.

``DATACENTRE`` is one more entity of the voucher entity store (``warehouse.vouchers``): the
same strict import (any bad row refuses the whole import, every problem named ``file:line``),
the same versioning (re-importing a file changes nothing; a corrected row becomes a new
version, the old one kept in ``datacentres_history``), the same import ledger (an import is
visible all at once or not at all) and the same views, ``datacentres`` (current) and
``datacentres_history``, at any ``--as-of``. The table is ``<lake>/vouchers/datacentres``.

A row names the site (``datacentre``: the id the telemetry carries), its ``region`` (province,
autonomous region or municipality), ``operator``, ``ownership`` (``public`` or ``private``) and
the national computing hub it belongs to, if any (``hub``: one of ``HUBS``, empty for none).
Reports group by region or ownership through ``datacentres``; a data centre the registry does
not list falls in the ``UNREGISTERED`` group, never out of the report (README, "Data-centre
registry").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.records import Field, FieldType, Kind, Record, RecordError

if TYPE_CHECKING:
    from warehouse.vouchers import ImportResult

S = FieldType.STRING
OWNERSHIP = ("public", "private")
UNREGISTERED = "unregistered"
"""The group of data centres with telemetry that the registry does not list."""
HUBS: dict[str, str] = {
    "beijing-tianjin-hebei": "east",
    "yangtze-river-delta": "east",
    "guangdong-hong-kong-macao": "east",
    "chengdu-chongqing": "east",
    "inner-mongolia": "west",
    "guizhou": "west",
    "gansu": "west",
    "ningxia": "west",
}
"""The eight national computing hubs of the "East Data, West Compute" plan: the four where
demand is (``east``) and the four inland ones built to take it (``west``)."""

DATACENTRE = Kind(
    "datacentre",
    "",
    "datacentres",
    (
        Field("datacentre", S, doc="the id the telemetry carries"),
        Field("name", S),
        Field("region", S, doc="province, autonomous region or municipality"),
        Field("operator", S),
        Field("ownership", S, doc="public / private"),
        Field("hub", S, nullable=True, doc="national computing hub; empty = none"),
    ),
    ("datacentre",),
    ("datacentre",),
    "datacentre",
)


def check_datacentre(r: Record) -> None:
    """The checks between a registry row's fields and the value lists; ``RecordError``."""
    if r["ownership"] not in OWNERSHIP:
        raise RecordError(
            f"ownership {r['ownership']!r} is not one of {', '.join(OWNERSHIP)}", "bad_value"
        )
    if r["hub"] is not None and r["hub"] not in HUBS:
        raise RecordError(
            f"hub {r['hub']!r} is not a national computing hub ({', '.join(HUBS)}; empty = none)",
            "bad_value",
        )
    for name in ("region", "ownership"):
        if r[name] == UNREGISTERED:
            raise RecordError(f"{name} {UNREGISTERED!r} names the reports' group", "bad_value")


def import_datacentres(
    lake: Path, files: Sequence[Path], *, now_ms: int | None = None
) -> ImportResult:
    """Import registry files (CSV, Parquet, JSON lines) into ``lake``: ``VoucherImportError``
    listing every problem (nothing written), else what was written."""
    from warehouse.vouchers import import_files

    return import_files(lake, {DATACENTRE.name: list(files)}, now_ms=now_ms)
