"""The versioned wire format of a Kafka message: one JSON envelope carrying a batch of records.

    {"v": 1, "kind": "gpu_sample", "records": [{...}, ...]}

Timestamps travel as epoch milliseconds. The envelope is derived from the contract
(``pipeline.records``); ``decode`` checks only the envelope, ``records.coerce`` checks each record,
so one bad record in a batch does not take its neighbours down with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.bounds import show
from pipeline.records import CONTRACT_VERSION, Kind, RecordError, kind

_MINUS_ZERO = re.compile(rb"-0(?![.0-9eE])")


def encode(k: Kind, records: Sequence[Mapping[str, Any]]) -> bytes:
    envelope = {"v": CONTRACT_VERSION, "kind": k.name, "records": list(records)}
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def decode(value: bytes | None) -> tuple[Kind, list[Any]]:
    """Parse an envelope; raise ``RecordError`` (terminal) if it is not one, and nothing else:
    any failure of the JSON parser (nesting too deep for it, memory) is "bad_envelope"."""
    if value is None:
        raise RecordError("empty message (tombstone)", "bad_envelope")
    try:
        return _decode(value)
    except RecordError:
        raise
    except RecursionError:
        raise RecordError("message JSON is nested too deeply to parse", "bad_envelope") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"message is not JSON: {exc}", "bad_envelope") from None
    except Exception as exc:
        raise RecordError(
            f"message could not be decoded: {type(exc).__name__}: {show(exc)}", "bad_envelope"
        ) from None


def _decode(value: bytes) -> tuple[Kind, list[Any]]:
    envelope = json.loads(value)
    if not isinstance(envelope, dict):
        raise RecordError("message is not a JSON object envelope", "bad_envelope")
    version = envelope.get("v")
    if version != CONTRACT_VERSION:
        raise RecordError(
            f"unsupported contract version {show(version)} (this build reads v{CONTRACT_VERSION})",
            "bad_version",
        )
    records = envelope.get("records")
    if not isinstance(records, list):
        raise RecordError("envelope has no 'records' list", "bad_envelope")
    name = envelope.get("kind")
    return kind(name if isinstance(name, str) else show(name)), records


def encode_record(record: Any) -> bytes:
    """One record's raw bytes, as kept in a dead-letter entry; never raises.

    JSON (ASCII: a lone surrogate becomes its ``\\udXXX`` escape) when the value has one; else
    (nesting too deep, keys that are not text, ...) its ``repr``; else a placeholder."""
    try:
        return json.dumps(record, separators=(",", ":"), default=str).encode()
    except Exception:
        pass
    try:
        return repr(record).encode("utf-8", "backslashreplace")
    except Exception:
        return f"<{type(record).__name__} that has neither JSON nor repr>".encode()


# -- what Arrow's JSON reader reads as json.loads does (pipeline.wire_batch) ---------------
def plain(value: Any) -> bool:
    """A value Arrow's JSON reader may read for ``json.loads``: ASCII bytes on one line."""
    return type(value) is bytes and value.isascii() and b"\n" not in value and b"\r" not in value


def all_plain(values: list[Any]) -> bool:
    """Whether every value is ``plain`` (checked at once: ASCII bytes, no line breaks but
    the ones that join them)."""
    if not values or any(type(v) is not bytes for v in values):
        return False
    data = b"\n".join(values)
    return data.isascii() and data.count(b"\n") == len(values) - 1 and b"\r" not in data


def int_minus_zero(data: bytes) -> bool:
    """Whether ``data`` may hold ``-0`` as an integer value: ``json.loads`` makes it 0 (then
    0.0 in a float column), Arrow's reader -0.0. Text such as ``"GPU-0"`` is passed over."""
    for match in _MINUS_ZERO.finditer(data):
        j = match.start() - 1
        while j >= 0 and data[j] in b" \t":
            j -= 1
        if j >= 0 and data[j] in b":,[":
            return True
    return False
