"""The voucher import ledger: what makes an import visible, all of it or none of it.

An import writes its rows to each entity's Delta table (one commit per table), then one row to
the ledger table ``<lake>/vouchers/_imports``. Only rows whose ``_import_id`` is in the ledger
exist for readers (``warehouse.catalog.entities.voucher_views``, ``current_records``): an import
killed
between its commits left rows nobody sees, and the ledger commit is atomic.

The ledger commit also serialises imports: it carries the Delta app transaction
``gpuledger:voucher-imports`` -> the import's sequence number, the number of ledgered imports
it was checked against plus one (``pipeline.lake.commit`` fences it). When another import
landed after this one read the state, the commit is refused and the import with it
(``ImportRaced``): its checks ran against a state it would not commit onto.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from pipeline import lake as lakes
from pipeline.errors import TransientError

LEDGER = "_imports"
APP_ID = "gpuledger:voucher-imports"
SCHEMA = pa.schema(
    [
        pa.field("import_id", pa.string(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("imported_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("written", pa.string(), nullable=False),
    ]
)


class ImportRaced(TransientError, RuntimeError):
    """Another import landed while this one was being checked; nothing of it is visible."""


@dataclass(frozen=True)
class LedgerState:
    sequence: int
    """Imports ledgered so far (the next one is ``sequence + 1``)."""
    import_ids: frozenset[str]
    last_ms: int
    """The newest import's time (epoch ms; -1 when none)."""


def ledger_path(lake: Path, vouchers_dir: str) -> Path:
    return Path(lake) / vouchers_dir / LEDGER


def read_state(path: Path) -> LedgerState:
    dt = lakes.open_table(path)
    if dt is None:
        return LedgerState(0, frozenset(), -1)
    rows = dt.to_pyarrow_table(columns=["import_id"]).column("import_id").to_pylist()
    sequence = dt.transaction_version(APP_ID) or 0
    last = max((int(i.split("-", 1)[0]) for i in rows), default=-1)
    return LedgerState(int(sequence), frozenset(rows), last)


def record(
    path: Path, state: LedgerState, import_id: str, now_ms: int, written: dict[str, int]
) -> int:
    """Make ``import_id`` visible: one ledger commit fenced on ``state``; its version."""
    return record_many(path, state, [(import_id, now_ms, written)])


def record_many(
    path: Path, state: LedgerState, imports: list[tuple[str, int, dict[str, int]]]
) -> int:
    """Make several imports (import id, epoch ms, rows written per entity) visible in one
    commit (a migration's); the sequence moves on by one."""
    sequence = state.sequence + 1
    rows = pa.Table.from_pylist(
        [
            {
                "import_id": import_id,
                "sequence": sequence,
                "imported_at": at_ms,
                "written": json.dumps(written, sort_keys=True),
            }
            for import_id, at_ms, written in imports
        ],
        schema=SCHEMA,
    )
    first = imports[0][0]
    try:
        return lakes.commit(
            path,
            rows,
            load_id=f"import-{first}",
            partition_by=None,
            offsets=[lakes.Offsets(APP_ID, sequence, sequence)],
            metadata={"gpuledger.import_id": ",".join(i for i, _, _ in imports)},
        )
    except lakes.Fenced:
        raise ImportRaced(
            "another voucher import landed while this one was being checked; nothing of this "
            "import is visible: run it again to check it against the new state"
        ) from None


def ledgered_sql(dt: DeltaTable | None) -> str:
    """A SQL list of the import ids in the ledger snapshot ``dt`` (for ``IN (...)``)."""
    ids = [] if dt is None else dt.to_pyarrow_table(columns=["import_id"]).column(0).to_pylist()
    return "(" + ", ".join(["NULL", *("'" + i.replace("'", "''") + "'" for i in ids)]) + ")"
