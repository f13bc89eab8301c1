"""One Kafka partition's messages between two flushes of ``ingest``: taken in runs as they are
polled, each run decoded at once (``pipeline.wire_batch``) and validated column-wise, and kept
as validated parts with the offsets they span."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.columnar import Part, per_message, validate, validate_arrays
from pipeline.records import Kind, RecordError
from pipeline.validate import Reject
from pipeline.wire import encode_record
from pipeline.wire_batch import Batch, decode_batch

log = logging.getLogger(__name__)


@dataclass
class PartitionBuffer:
    kind: Kind
    first: int
    last: int = -1
    messages: int = 0
    taken: int = 0
    """Records (good or rejected) of the messages taken; a dead message counts one."""
    parts: list[Part] = field(default_factory=list)
    """Validated records in offset order: Arrow rows, or records (the per-record path)."""
    origins: list[tuple[int, int]] = field(default_factory=list)
    """(offset, index in its message) of each record of the record parts (one Arrow refuses)."""
    rejected: int = 0


@dataclass(frozen=True)
class Letter:
    """One reject of a run, for the dead-letter topic."""

    offset: int
    raw: bytes
    reason: str
    error_class: str
    kind: Kind | None
    index: int | None
    """The record's position in its message; None = the whole message."""


def take(buf: PartitionBuffer, messages: Sequence[Any], topic: str) -> list[Letter]:
    """Decode and validate a run of the partition's messages (in offset order) into ``buf``;
    return its dead letters in message order, as if each message were validated alone. A
    message that cannot be decoded, or holds another kind than its topic's, is one dead
    letter (its ``RecordError``), whatever raised."""
    buf.last = messages[-1].offset
    buf.messages += len(messages)
    try:
        batch = decode_batch(buf.kind, messages, topic)
        fast = _validate_columns(buf.kind, batch)
    except Exception:  # a bug there must not cost a record: message by message decides
        log.exception("decoding a run at once failed; decoding message by message")
        fast = None
    if fast is None:  # the records, message by message and record by record where need be
        batch = decode_batch(buf.kind, messages, topic, arrow_json=False)
        raws = [r for rs in batch.records() for r in rs]
        fast = validate(buf.kind, raws) if raws else ([], [])
    parts, bad = fast
    buf.parts.extend(p for p in parts if len(p))
    buf.taken += batch.n + len(batch.dead) - batch.dead.count(None)
    listed = any(isinstance(p, list) and p for p in parts)
    if not bad and not listed and len(batch.live) == len(messages):
        return []  # nothing to dead-letter, no origins to keep
    letters = list(_letters(buf, messages, batch, bad, listed))
    buf.rejected += len(letters)
    return letters


def _validate_columns(k: Kind, batch: Batch) -> tuple[list[Part], list[Reject]] | None:
    """The live records of ``batch`` validated from its columns; None when it has none or they
    cannot be judged as they are (``columnar.validate_arrays``)."""
    if batch.columns is None:
        return None
    try:
        fast = validate_arrays(k, batch.columns, batch.n, batch.raws_of)
    except Exception:  # e.g. a raw record json.loads reads otherwise: message by message
        return None
    return None if fast is None else ([fast[0]], fast[1])


def _letters(
    buf: PartitionBuffer,
    messages: Sequence[Any],
    batch: Batch,
    bad: list[Reject],
    listed: bool,
) -> Iterator[Letter]:
    rejects = iter(per_message(bad, batch.sizes))
    sizes = iter(batch.sizes)
    for msg, why in zip(messages, batch.dead, strict=True):
        if isinstance(why, RecordError):
            yield Letter(msg.offset, msg.value or b"", why.reason, why.error_class, None, None)
            continue
        mine, size = next(rejects), next(sizes)
        for r in mine:
            raw = encode_record(r.raw)
            yield Letter(msg.offset, raw, r.error.reason, r.error.error_class, buf.kind, r.index)
        if listed:  # records, kept with their origins
            bad_at = {r.index for r in mine}
            buf.origins.extend((msg.offset, i) for i in range(size) if i not in bad_at)
