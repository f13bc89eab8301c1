"""Dead letters: every rejected record is kept with its raw bytes and the reason.

Streaming: ``<topic>.dlq`` messages whose value is the raw bytes (the record's JSON, or the
whole message when its envelope was unreadable) and whose headers carry the reason, error
class and origin topic/partition/offset/index. Backfill: a quarantine JSON-lines file
``<lake>/_quarantine/<load_id>.jsonl`` with the same fields.

A raw value too large for the broker is cut (``DeadLetter.fitted``, ``DLQ_MAX_RAW_BYTES``): the
letter then records the original length (``truncated_from``) and the SHA-256 of the whole raw
value (``raw_sha256``). Header values and quarantine text are always encodable UTF-8 (a lone
surrogate in a reason or origin is written as its ``\\udXXX`` escape).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.atomic import AtomicFile
from pipeline.kafka_config import KafkaSecurity, client_kwargs
from pipeline.kafka_connect import connect
from pipeline.write import safe_part

QUARANTINE_DIR = "_quarantine"
DLQ_MAX_RAW_BYTES = 1_000_000
"""Most raw bytes a dead letter carries (headers come on top: keep the broker's
``message.max.bytes`` above this plus some kilobytes)."""


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
    truncated_from: int | None = None
    """Length in bytes of the original raw value when ``raw`` is only its start (``fitted``)."""
    raw_sha256: str | None = None
    """Hex SHA-256 of the whole original raw value, set when it was truncated."""

    def fitted(self, max_bytes: int = DLQ_MAX_RAW_BYTES) -> DeadLetter:
        """This letter with ``raw`` at most ``max_bytes`` long: when longer, a copy with the
        first ``max_bytes`` bytes, recording the full length and SHA-256 of the original."""
        if len(self.raw) <= max_bytes:
            return self
        return replace(
            self,
            raw=self.raw[: max(max_bytes, 0)],
            truncated_from=self.truncated_from or len(self.raw),
            raw_sha256=self.raw_sha256 or hashlib.sha256(self.raw).hexdigest(),
        )

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
        out = [(k, b"" if v is None else _utf8(str(v))) for k, v in meta.items()]
        if self.truncated_from is not None:  # only on cut letters: others stay as they were
            out.append(("truncated_from", str(self.truncated_from).encode()))
            out.append(("raw_sha256", (self.raw_sha256 or "").encode()))
        return out

    def message_key(self) -> bytes:
        return f"{self.origin}/{self.partition}/{self.offset}/{self.index}".encode()

    @classmethod
    def from_headers(cls, value: bytes, headers: list[tuple[str, bytes]]) -> DeadLetter:
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}

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
            truncated_from=num("truncated_from"),
            raw_sha256=h.get("raw_sha256") or None,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["raw"] = self.raw.decode("utf-8", errors="backslashreplace")
        for name in ("reason", "error_class", "kind", "origin"):
            if isinstance(out[name], str):
                out[name] = _utf8(out[name]).decode("utf-8")
        return out


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (not encodable) as its backslash escape."""
    return text.encode("utf-8", "backslashreplace")


class QuarantineWriter:
    """One load's quarantine file (JSON lines), written as it goes and put in place,
    atomically and durably, at ``close`` (replacing a previous attempt's)."""

    def __init__(self, lake: Path, name: str) -> None:
        folder = lake / QUARANTINE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{safe_part(name)}.jsonl"
        self._file = AtomicFile(self.path)

    def write(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            self._file.fh.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")

    def close(self) -> Path:
        return self._file.commit()


def write_quarantine(lake: Path, load_id: str, letters: list[DeadLetter]) -> Path | None:
    """Write (atomically, replacing a previous attempt) the quarantine file of one load."""
    if not letters:
        return None
    writer = QuarantineWriter(lake, load_id)
    writer.write(letters)
    return writer.close()


def read_dead_letters(
    bootstrap: str,
    dlq_topic: str,
    idle_timeout_s: float = 5.0,
    security: KafkaSecurity | None = None,
) -> list[DeadLetter]:
    """Every dead letter in ``dlq_topic`` from the beginning (no consumer group, no commit)."""
    from kafka import KafkaConsumer

    def make(bootstrap_timeout_ms: int) -> KafkaConsumer:
        return KafkaConsumer(
            dlq_topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=int(idle_timeout_s * 1000),
            bootstrap_timeout_ms=bootstrap_timeout_ms,
            **client_kwargs(security),
        )

    consumer = connect(make, bootstrap, security, 30.0, "read dead letters")
    try:
        return [DeadLetter.from_headers(m.value or b"", list(m.headers or [])) for m in consumer]
    finally:
        consumer.close()
