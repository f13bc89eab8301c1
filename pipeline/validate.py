"""Validation shared by the streaming path (ingest) and the backfill path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.records import Kind, Record, RecordError, coerce


@dataclass(frozen=True)
class Reject:
    raw: Any
    error: RecordError
    index: int
    """Position of the record in its batch (message or chunk)."""


def validate_batch(k: Kind, raws: Iterable[Any]) -> tuple[list[Record], list[Reject]]:
    good: list[Record] = []
    bad: list[Reject] = []
    for i, raw in enumerate(raws):
        try:
            good.append(coerce(k, raw))
        except RecordError as err:
            bad.append(Reject(raw, err, i))
    return good, bad
