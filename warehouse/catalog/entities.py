"""Views over the entity tables (``pipeline.entities``): for each, ``<table>`` (the latest
version per key) and ``<table>_history`` (every version, with ``_import_id``, ``_imported_at``,
``_source``: the file and line it came from), over the snapshots the catalogue pinned and only
the rows of imports the ledger holds (``pipeline.ledger``)."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
from deltalake import DeltaTable

from pipeline import ledger
from pipeline.entities import ENTITIES
from pipeline.records import Kind
from warehouse.catalog.sources import LEDGER_SNAPSHOT, delta_source, ident


def voucher_views(
    con: duckdb.DuckDBPyConnection, snapshots: Mapping[str, DeltaTable | None]
) -> None:
    """Create ``<table>`` (current) and ``<table>_history`` views for every voucher entity,
    over the given snapshots (by table name; ``warehouse.catalog.refresh`` passes them)."""
    visible = ledger.ledgered_sql(snapshots.get(LEDGER_SNAPSHOT))
    for k in ENTITIES.values():
        con.execute(_history_sql(k, snapshots.get(k.table), visible))
        key = ident(k.key[0])
        cols = ", ".join(ident(n) for n in k.names)
        con.execute(
            f"CREATE OR REPLACE VIEW {ident(k.table)} AS SELECT {cols} "
            f"FROM {ident(k.table + '_history')} "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _import_id DESC) = 1"
        )


def _history_sql(k: Kind, dt: DeltaTable | None, visible: str) -> str:
    cols = [(n, t) for n, t in k.duckdb_columns()]
    cols += [("_import_id", "VARCHAR"), ("_imported_at", "TIMESTAMPTZ"), ("_source", "VARCHAR")]
    view = ident(k.table + "_history")
    source = delta_source(dt)
    if source is None:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in cols)
        return f"CREATE OR REPLACE VIEW {view} AS SELECT {nulls} WHERE false"
    select = ", ".join(f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in cols)
    return (
        f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {source} "
        f"WHERE _import_id IN {visible}"
    )
