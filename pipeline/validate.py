"""Validation shared by the streaming path (ingest) and the backfill path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.bounds import show, window_bounds
from pipeline.records import Kind, Record, RecordError, coerce


@dataclass(frozen=True)
class Reject:
    raw: Any
    error: RecordError
    index: int
    """Position of the record in its batch (message or chunk)."""


def validate_batch(
    k: Kind, raws: Iterable[Any], window_ms: tuple[int, int] | None = None
) -> tuple[list[Record], list[Reject]]:
    """Each raw record coerced, or rejected with the reason. One record never takes the batch
    down: an exception other than ``RecordError`` (a bug, or input nobody foresaw) rejects
    that record as ``unexpected_error`` with the exception's repr in the reason.

    ``window_ms``: the plausibility window (``bounds.window_bounds()``), None = read it now.
    ``pipeline.columnar.validate`` is the same, column-wise, for a whole batch."""
    good: list[Record] = []
    bad: list[Reject] = []
    if window_ms is None:
        window_ms = window_bounds()  # the clock read once per batch, not per record
    for i, raw in enumerate(raws):
        try:
            good.append(coerce(k, raw, window_ms))
        except RecordError as err:
            bad.append(Reject(raw, err, i))
        except Exception as exc:
            bad.append(Reject(raw, unexpected(exc), i))
    return good, bad


def unexpected(exc: BaseException) -> RecordError:
    """A ``RecordError`` standing for an exception that is not one (class "unexpected_error")."""
    try:
        text = repr(exc)
    except Exception:  # a repr that raises, or too deep to build
        text = f"{type(exc).__name__}: {show(exc)}"
    return RecordError(f"unexpected error while validating: {text}", "unexpected_error")
