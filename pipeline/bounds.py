"""Value bounds of the record contract: what a field may hold so that Arrow, Parquet, DuckDB and
the lake's ``date=`` partitions always take it. A record ``coerce`` accepts never crashes the
writer; hostile input raises ``RecordError`` and nothing else.

Every field, whatever its kind (the telemetry contract and the voucher entities alike):

- TIMESTAMP: representable, 0001-01-01 .. 9999-12-31 UTC (Python ``datetime``, Arrow's
  ``to_pylist``, ``lake_date``);
- INT: a signed 64-bit integer;
- FLOAT: a finite double (a Python int too large for a double is ``out_of_range``);
- STRING and STRING_LIST entries: encodable as UTF-8 (no lone surrogates, which ``json.loads``
  makes from ``"\\ud800"``) and no NUL character (``bad_text``).

Opt-in per ``Field`` (the telemetry kinds in ``pipeline.records`` opt in for every field):

- ``windowed``: a TIMESTAMP inside the plausibility window (``TimeWindow``; default
  2000-01-01T00:00:00Z .. now + 1 day, now read at each check), changed process-wide with
  ``set_time_window`` or for a block with ``using_time_window``;
- ``max_chars``: text at most that long (``MAX_ID_CHARS`` for the contract's ids: ``too_long``);
- ``max_items``: a list at most that long (``MAX_LIST_ITEMS``: ``too_long``).

``RecordError`` lives here (and is re-exported by ``pipeline.records``, its usual import) so
that these checks need nothing from the contract module. A reason is kept printable and short:
lone surrogates become ``\\udXXX`` escapes and it is cut at ``MAX_REASON_CHARS``, so it always
fits a Kafka header.
"""

from __future__ import annotations

import math
import re
import reprlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import TerminalError

MAX_ID_CHARS = 128
"""Longest text of an id or key field (datacentre, cluster, node, gpu_uuid, job_id, ...)."""
MAX_LIST_ITEMS = 4096
"""Most entries of a STRING_LIST field (gpu_uuids, nodes)."""
MAX_REASON_CHARS = 1000

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FLOAT_MAX = 1.7976931348623157e308
MIN_TS_MS = -62_135_596_800_000
"""0001-01-01T00:00:00Z: the earliest instant Python's datetime (and so the lake) can hold."""
MAX_TS_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z."""
DAY_MS = 86_400_000
PLAUSIBLE_FROM_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: the default start of the plausibility window."""


class RecordError(TerminalError, ValueError):
    """A terminal problem with one record: it goes to the dead-letter path, never retried."""

    def __init__(self, reason: str, error_class: str = "invalid_record") -> None:
        reason = safe_text(reason)
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class


def safe_text(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` encodable as UTF-8 (lone surrogates escaped) and at most ``limit`` characters."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlong = 40


def show(value: Any) -> str:
    """A short, safe repr of a (possibly hostile) value for a reason: bounded in length and
    depth; never raises."""
    try:
        return _REPR.repr(value)
    except Exception:  # a huge int (no str), or an object whose repr raises
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__}>"


# ------------------------------------------------------------------------- time window


@dataclass(frozen=True)
class TimeWindow:
    """The plausible instants of a windowed TIMESTAMP field, epoch ms, both ends included.

    ``hi_ms=None`` means "now + ``ahead_ms``", with now read at each check (a long-running
    ingest keeps accepting new data). Either end is clamped to the representable range."""

    lo_ms: int = PLAUSIBLE_FROM_MS
    hi_ms: int | None = None
    ahead_ms: int = DAY_MS

    def __post_init__(self) -> None:
        if self.hi_ms is not None and self.hi_ms < self.lo_ms:
            raise ValueError(f"TimeWindow ends ({self.hi_ms}) before it starts ({self.lo_ms})")

    def bounds(self) -> tuple[int, int]:
        """(lo_ms, hi_ms) now, clamped to the representable range."""
        lo = self.lo_ms if self.lo_ms > MIN_TS_MS else MIN_TS_MS
        hi = self.hi_ms if self.hi_ms is not None else int(_clock() * 1000) + self.ahead_ms
        return lo, hi if hi < MAX_TS_MS else MAX_TS_MS


_clock = time.time
DEFAULT_TIME_WINDOW = TimeWindow()
_window = DEFAULT_TIME_WINDOW


def time_window() -> TimeWindow:
    return _window


def set_time_window(window: TimeWindow | None) -> TimeWindow:
    """Replace the process-wide window (``None``: the default); return the previous one."""
    global _window
    previous, _window = _window, DEFAULT_TIME_WINDOW if window is None else window
    return previous


@contextmanager
def using_time_window(window: TimeWindow) -> Iterator[TimeWindow]:
    """``with using_time_window(TimeWindow(lo, hi)):`` the window for one block (tests, a
    backfill of old data)."""
    previous = set_time_window(window)
    try:
        yield window
    finally:
        set_time_window(previous)


def window_bounds() -> tuple[int, int]:
    """The current window's (lo_ms, hi_ms), now read once: what ``coerce(..., window_ms=)``
    takes, to read the clock once for a whole batch."""
    return _window.bounds()


def _instant(ms: int) -> str:
    if MIN_TS_MS <= ms <= MAX_TS_MS:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{show(ms)} ms"


def outside_window(name: str, ms: int, lo: int, hi: int) -> RecordError:
    return RecordError(
        f"{name} {_instant(ms)} is outside the plausible window {_instant(lo)} .. {_instant(hi)};"
        " set pipeline.bounds.set_time_window(TimeWindow(lo_ms, hi_ms)) to change it",
        "out_of_range",
    )


def check_ts(name: str, ms: int, windowed: bool) -> int:
    """``ms`` if it is representable and, for a windowed field, inside the window."""
    if windowed:
        lo, hi = _window.bounds()
        if not lo <= ms <= hi:
            raise outside_window(name, ms, lo, hi)
    elif not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise RecordError(
            f"{name} {show(ms)} ms is outside the representable range 0001-01-01 .. 9999-12-31 UTC",
            "out_of_range",
        )
    return ms


_EPOCH_MS = re.compile(r"-?[0-9]+")


def parse_ts(value: Any) -> int:
    """An instant as epoch ms: int/float epoch milliseconds, or ISO-8601 text with an offset.

    Only parses (``RecordError`` "bad_timestamp"); the range is ``check_ts``'. Re-exported by
    ``pipeline.records``."""
    if isinstance(value, bool):
        raise RecordError(f"timestamp must be epoch ms or ISO-8601, got {value!r}", "bad_timestamp")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"timestamp is not finite: {value!r}", "bad_timestamp")
        return int(round(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise RecordError(f"timestamp {value!r} has no UTC offset", "bad_timestamp")
        return _datetime_ms(value, value)
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_MS.fullmatch(text):
            if len(text) > 20:
                raise RecordError(f"timestamp {show(value)} is far too large", "out_of_range")
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"timestamp {show(value)} is not ISO-8601", "bad_timestamp") from None
        if parsed.tzinfo is None:
            raise RecordError(
                f"timestamp {show(value)} has no UTC offset (write e.g. 2020-05-01T00:00:00+08:00)",
                "bad_timestamp",
            )
        return _datetime_ms(parsed, value)
    raise RecordError(f"timestamp must be epoch ms or ISO-8601, got {show(value)}", "bad_timestamp")


def _datetime_ms(instant: datetime, value: Any) -> int:
    try:  # an offset can push 0001-01-01 / 9999-12-31 out of datetime's range
        return int(round(instant.timestamp() * 1000))
    except (OverflowError, ValueError, OSError):
        raise RecordError(f"timestamp {show(value)} is out of range", "out_of_range") from None


# ------------------------------------------------------------------------------ numbers


def check_int(name: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise RecordError(f"{name}={show(value)} does not fit a 64-bit integer", "out_of_range")
    return value


def to_float(name: str, value: int | float) -> float:
    """``value`` as a finite float, or ``out_of_range``."""
    try:
        number = float(value)
    except OverflowError:
        raise RecordError(
            f"{name}={show(value)} is too large for a float", "out_of_range"
        ) from None
    if not math.isfinite(number):
        raise RecordError(f"{name} is not finite: {value!r}", "out_of_range")
    return number


# --------------------------------------------------------------------------------- text


def check_text(name: str, text: str, max_chars: int | None) -> str:
    """``text`` if Arrow can store it (UTF-8, no NUL) and it is at most ``max_chars`` long."""
    if max_chars is not None and len(text) > max_chars:
        raise RecordError(
            f"{name} is {len(text)} characters long, more than {max_chars}: {show(text)}",
            "too_long",
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(
                f"{name} {show(text)} holds a lone surrogate at character {exc.start};"
                " text must be valid Unicode",
                "bad_text",
            ) from None
    if "\x00" in text:
        raise RecordError(f"{name} {show(text)} holds a NUL character", "bad_text")
    return text


def text_of(name: str, value: str | int) -> str:
    """An int taken as text (``job_id: 123``); a huge int has no decimal text: ``too_long``."""
    try:
        return str(value)
    except ValueError:  # an int above sys.get_int_max_str_digits()
        raise RecordError(f"{name}={show(value)} is too long for text", "too_long") from None


def check_list(name: str, value: Any, max_chars: int | None, max_items: int | None) -> list[str]:
    """A STRING_LIST value: a list/tuple of text, or text split at ``;`` (empty parts dropped)."""
    if isinstance(value, str):
        value = [v for v in value.split(";") if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{name} must be a list of text, got {show(value)}", "bad_type")
    if max_items is not None and len(value) > max_items:
        raise RecordError(f"{name} has {len(value)} entries, more than {max_items}", "too_long")
    return [check_text(f"{name}[{i}]", v, max_chars) for i, v in enumerate(value)]
