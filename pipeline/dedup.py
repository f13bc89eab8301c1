"""Duplicates within a batch (docs/semantics.md#deduplication): same key = one record.

Identical payloads collapse silently (counted as duplicates); differing payloads keep the last
one written and are counted as conflicts. The warehouse views apply the same rule across files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.records import Kind, Record


@dataclass(frozen=True)
class DedupResult:
    records: list[Record]
    duplicates: int
    conflicts: int


def dedup(k: Kind, records: Sequence[Record]) -> DedupResult:
    latest: dict[tuple[object, ...], Record] = {}
    duplicates = conflicts = 0
    for r in records:
        key = tuple(r[f] for f in k.key)
        previous = latest.get(key)
        if previous is not None:
            if previous == r:
                duplicates += 1
            else:
                conflicts += 1
            del latest[key]  # re-insert so the order follows the last write
        latest[key] = r
    return DedupResult(list(latest.values()), duplicates, conflicts)
