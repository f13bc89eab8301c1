"""The entity tables beside the telemetry, one definition each: the compute-voucher records
(programmes, tenants, vouchers, claims; docs/audit.md#voucher-records) and the data-centre
registry (where each site is, who runs it, whether it is public).

They are ``pipeline.records.Kind`` values, so their Arrow schema, DuckDB columns and row
coercion come from the same machinery as the telemetry contract. They are imported from files
(``pipeline.entity_import``: strict, versioned, all of an import visible or none of it), never
streamed: ``topic`` is empty. Each lives in the Delta table ``<lake>/vouchers/<table>`` with
the import columns ``META``; the catalogue shows ``<table>`` (current) and
``<table>_history`` (``warehouse.catalog.entities``).

A registry row names the site (``datacentre``: the id the telemetry carries), its ``region``
(province, autonomous region or municipality), ``operator``, ``ownership`` (``public`` or
``private``) and the national computing hub it belongs to, if any (``hub``: one of ``HUBS``,
empty for none). Reports group by region or ownership through ``datacentres``; a data centre
the registry does not list falls in the ``UNREGISTERED`` group, never out of the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.records import Field, FieldType, Kind, Record, RecordError, coerce_fields

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


VOUCHERS_DIR = "vouchers"
T, F, L = FieldType.TIMESTAMP, FieldType.FLOAT, FieldType.STRING_LIST


def _kind(name: str, table: str, fields: tuple[Field, ...], time_field: str) -> Kind:
    key = (fields[0].name,)
    return Kind(name, "", table, fields, key, key, time_field)


PROGRAMME = _kind(
    "programme",
    "programmes",
    (
        Field("programme_id", S),
        Field("issuer", S, doc="city / province"),
        Field("region", S),
        Field("budget_cny", F, min=0.0),
        Field("max_coverage", F, doc="subsidy / invoice cap, e.g. 0.80", min=0.0, max=1.0),
        Field("valid_from", T),
        Field("valid_to", T),
        Field("eligible_tenant_types", L, doc="e.g. sme;research"),
        Field("eligible_datacentres", L, nullable=True, doc="empty = any"),
        Field("price_cap_cny_per_gpu_hour", F, nullable=True, min=0.0),
    ),
    "valid_from",
)
TENANT = _kind(
    "tenant",
    "tenants",
    (
        Field("tenant_id", S),
        Field("name", S),
        Field("tenant_type", S, doc="sme / research / large"),
        Field("region", S),
    ),
    "tenant_id",
)
VOUCHER = _kind(
    "voucher",
    "vouchers",
    (
        Field("voucher_id", S),
        Field("programme_id", S),
        Field("tenant_id", S),
        Field("face_value_cny", F, min=0.0),
        Field("issued_at", T),
        Field("expires_at", T),
    ),
    "issued_at",
)
CLAIM = _kind(
    "claim",
    "claims",
    (
        Field("claim_id", S),
        Field("voucher_id", S),
        Field("tenant_id", S),
        Field("datacentre", S),
        Field("period_start", T),
        Field("period_end", T),
        Field("allocation_ids", L, nullable=True, doc="null = all the tenant's allocations"),
        Field("claimed_gpu_hours", F, min=0.0),
        Field("unit_price_cny", F, min=0.0),
        Field("invoice_cny", F, min=0.0),
        Field("subsidy_cny", F, min=0.0),
        Field("submitted_at", T),
    ),
    "submitted_at",
)
ENTITIES: dict[str, Kind] = {k.name: k for k in (PROGRAMME, TENANT, VOUCHER, CLAIM, DATACENTRE)}
"""In reference order: an entity only refers to the ones before it."""
TENANT_TYPES = ("sme", "research", "large")
INTERVALS = {"programme": ("valid_from", "valid_to"), "voucher": ("issued_at", "expires_at")}
INTERVALS["claim"] = ("period_start", "period_end")
REFS: dict[str, tuple[tuple[str, str], ...]] = {
    "voucher": (("programme_id", "programme"), ("tenant_id", "tenant")),
    "claim": (("voucher_id", "voucher"), ("tenant_id", "tenant")),
}
META = [
    pa.field("_import_id", pa.string(), nullable=False),
    pa.field("_imported_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_source", pa.string(), nullable=False),
]


def coerce_entity(k: Kind, raw: Mapping[str, Any]) -> Record:
    """One mapping as a canonical voucher-entity record (the contract's per-field coercion)."""
    out = coerce_fields(k, raw)
    _check_relations(k, out)
    return out


def _check_relations(k: Kind, r: Record) -> None:
    if k.name in INTERVALS:
        lo, hi = INTERVALS[k.name]
        if r[hi] <= r[lo]:
            raise RecordError(f"{hi} is not after {lo}", "bad_interval")
    if k is TENANT and r["tenant_type"] not in TENANT_TYPES:
        raise RecordError(
            f"tenant_type {r['tenant_type']!r} is not one of {', '.join(TENANT_TYPES)}", "bad_value"
        )
    if k is DATACENTRE:
        check_datacentre(r)
    if k is PROGRAMME:
        bad = [t for t in r["eligible_tenant_types"] if t not in TENANT_TYPES]
        if bad:
            raise RecordError(f"unknown eligible_tenant_types {', '.join(bad)}", "bad_value")


def entity_table(lake: Path, k: Kind) -> Path:
    return Path(lake) / VOUCHERS_DIR / k.table
