"""The versioned wire format of a Kafka message: one JSON envelope carrying a batch of records.

    {"v": 1, "kind": "gpu_sample", "records": [{...}, ...]}

Timestamps travel as epoch milliseconds. The envelope is derived from the contract
(``pipeline.records``); ``decode`` checks only the envelope, ``records.coerce`` checks each record,
so one bad record in a batch does not take its neighbours down with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.records import CONTRACT_VERSION, Kind, RecordError, kind


def encode(k: Kind, records: Sequence[Mapping[str, Any]]) -> bytes:
    envelope = {"v": CONTRACT_VERSION, "kind": k.name, "records": list(records)}
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def decode(value: bytes | None) -> tuple[Kind, list[Any]]:
    """Parse an envelope; raise ``RecordError`` (terminal) if it is not one."""
    if value is None:
        raise RecordError("empty message (tombstone)", "bad_envelope")
    try:
        envelope = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"message is not JSON: {exc}", "bad_envelope") from None
    if not isinstance(envelope, dict):
        raise RecordError("message is not a JSON object envelope", "bad_envelope")
    version = envelope.get("v")
    if version != CONTRACT_VERSION:
        raise RecordError(
            f"unsupported contract version {version!r} (this build reads v{CONTRACT_VERSION})",
            "bad_version",
        )
    records = envelope.get("records")
    if not isinstance(records, list):
        raise RecordError("envelope has no 'records' list", "bad_envelope")
    return kind(str(envelope.get("kind"))), records


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record's raw bytes, as kept in a dead-letter entry."""
    return json.dumps(record, separators=(",", ":"), default=str).encode()
