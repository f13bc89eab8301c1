"""Dead letters: every rejected record is kept with its raw bytes and the reason.

Streaming: ``<topic>.dlq`` messages whose value is the raw bytes (the record's JSON, or the
whole message when its envelope was unreadable) and whose headers carry the reason, error
class and origin topic/partition/offset/index. Backfill: a quarantine JSON-lines file
``<lake>/_quarantine/<load_id>.jsonl`` with the same fields.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.write import fsync_dir, safe_part

QUARANTINE_DIR = "_quarantine"


@dataclass(frozen=True)
class DeadLetter:
    raw: bytes
    reason: str
    error_class: str
    kind: str | None
    origin: str
    """topic (streaming) or input description (backfill)."""
    partition: int | None = None
    offset: int | None = None
    index: int | None = None
    """Position of the record inside its message or chunk; None = the whole message."""

    def headers(self) -> list[tuple[str, bytes]]:
        meta = {
            "reason": self.reason,
            "error_class": self.error_class,
            "kind": self.kind,
            "origin_topic": self.origin,
            "origin_partition": self.partition,
            "origin_offset": self.offset,
            "record_index": self.index,
        }
        return [(k, b"" if v is None else str(v).encode()) for k, v in meta.items()]

    def message_key(self) -> bytes:
        return f"{self.origin}/{self.partition}/{self.offset}/{self.index}".encode()

    @classmethod
    def from_headers(cls, value: bytes, headers: list[tuple[str, bytes]]) -> DeadLetter:
        h = {k: v.decode() for k, v in headers}

        def num(name: str) -> int | None:
            return int(h[name]) if h.get(name) else None

        return cls(
            raw=value,
            reason=h.get("reason", ""),
            error_class=h.get("error_class", ""),
            kind=h.get("kind") or None,
            origin=h.get("origin_topic", ""),
            partition=num("origin_partition"),
            offset=num("origin_offset"),
            index=num("record_index"),
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["raw"] = self.raw.decode("utf-8", errors="backslashreplace")
        return out


def write_quarantine(lake: Path, load_id: str, letters: list[DeadLetter]) -> Path | None:
    """Write (atomically, replacing a previous attempt) the quarantine file of one load."""
    if not letters:
        return None
    folder = lake / QUARANTINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_part(load_id)}.jsonl"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for letter in letters:
            fh.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    return path


def read_dead_letters(
    bootstrap: str, dlq_topic: str, idle_timeout_s: float = 5.0
) -> list[DeadLetter]:
    """Every dead letter in ``dlq_topic`` from the beginning (no consumer group, no commit)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
    )
    try:
        return [DeadLetter.from_headers(m.value or b"", list(m.headers or [])) for m in consumer]
    finally:
        consumer.close()
