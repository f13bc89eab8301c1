"""One Kafka partition's messages between two flushes of ``ingest``: taken (decoded) as they
are polled, validated in batches, and kept as validated parts with the offsets they span."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.columnar import Part
from pipeline.records import Kind, RecordError
from pipeline.wire import decode


@dataclass
class PartitionBuffer:
    kind: Kind
    first: int
    last: int = -1
    taken: int = 0
    """Records (good or rejected) of the messages taken, as ``take`` counts them."""
    pending: list[tuple[Any, list[Any] | RecordError]] = field(default_factory=list)
    """Messages taken but not validated yet: (message, its records or why it is dead)."""
    parts: list[Part] = field(default_factory=list)
    """Validated records in offset order: Arrow rows, or records (the per-record path)."""
    origins: list[tuple[int, int]] = field(default_factory=list)
    """(offset, index in its message) of each record of the record parts (one Arrow refuses)."""
    rejected: int = 0


def take(buf: PartitionBuffer, msg: Any, topic: str) -> int:
    """Buffer one message (validated later, with the others taken); return how many records it
    carried. A message that cannot be decoded, or holds another kind than its topic's, is kept
    as one dead letter (its ``RecordError``), whatever raised."""
    buf.last = msg.offset
    try:
        kind, raws = decode(msg.value)
        if kind is not buf.kind:
            raise RecordError(f"{kind.name} records on topic {topic}", "wrong_topic")
    except Exception as exc:  # the whole message is one dead letter, whatever raised
        err = exc if isinstance(exc, RecordError) else RecordError(repr(exc), "unexpected")
        buf.pending.append((msg, err))
        buf.taken += 1
        return 1
    buf.pending.append((msg, raws))
    buf.taken += len(raws)
    return len(raws)
