"""Prometheus text exposition, line by line, for streams that are mostly well formed.

prometheus_client's parser raises on the first string-valued line (``DCGM_FI_DEV_NAME{...}
Tesla T4``) and would lose a whole scrape, so every line is checked here first
(:func:`check_sample_line`); names and labels then come from prometheus_client, once per
distinct ``name{labels}`` text (:data:`SeriesCache`), and the value and timestamp from the
already checked tokens.
"""

from __future__ import annotations

import re
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|nan)", re.I)
_TIMESTAMP = re.compile(r"-?\d+")
_PARSER_ERRORS = (ValueError, IndexError, KeyError)

SeriesCache = dict[str, tuple[str, dict[str, str]]]
"""``name{labels}`` text -> (name, labels) as prometheus_client parsed it once."""
SERIES_CACHE_MAX = 200_000
Sample = tuple[str, dict[str, str], float, int | None]
"""(metric name, labels, value, exposition timestamp in ms or None)."""


def split_sample_line(line: str) -> tuple[str, list[str]] | None:
    """``name{labels} value [ts]`` -> (``name{labels}``, tokens after it); None if malformed."""
    brace = line.find("{")
    if brace != -1 and len(line[:brace].split()) == 1:
        end = line.rfind("}")
        if end < brace:
            return None
        return line[: end + 1], line[end + 1 :].split()
    parts = line.split(None, 1)
    return parts[0], (parts[1].split() if len(parts) > 1 else [])


def check_sample_line(line: str) -> str | None:
    """Why a (non-comment) line cannot be a numeric sample, or None if it can."""
    return _check(split_sample_line(line))


def _check(split: tuple[str, list[str]] | None) -> str | None:
    if split is None or not split[1]:
        return "unparseable_line"
    series, tokens = split
    if not _METRIC_NAME.fullmatch(series.split("{", 1)[0].strip()):
        return "unparseable_line"
    if not _NUMBER.fullmatch(tokens[0]):
        return "non_numeric_value"
    if len(tokens) > 2 or (len(tokens) == 2 and not _TIMESTAMP.fullmatch(tokens[1])):
        return "unparseable_line"
    return None


def line_timestamp_ms(line: str) -> int | None:
    """The exposition timestamp (ms) of a sample line, or None (no timestamp, comment, other)."""
    stripped = line.strip()
    if not stripped or stripped[0] == "#":
        return None
    split = split_sample_line(stripped)
    if split is None or len(split[1]) != 2 or not _TIMESTAMP.fullmatch(split[1][1]):
        return None
    return int(split[1][1])


def _value(token: str) -> float:
    return int(token) if token.isdigit() else float(token)


def _parse_series(line: str) -> tuple[str, dict[str, str]] | None:
    """Name and labels of one sample line, by prometheus_client's parser (None: it refuses)."""
    try:
        for family in text_string_to_metric_families(line + "\n"):
            for sample in family.samples:
                return sample.name, sample.labels
    except _PARSER_ERRORS:
        return None
    return None


def scan_samples(text: str, skipped: Counter[str], cache: SeriesCache) -> list[Sample]:
    """Every numeric sample line of ``text``; other lines are counted in ``skipped``.

    Each line is checked before the parser sees it (prometheus_client raises on the first
    string-valued line and would lose the whole scrape). Names and labels come from
    prometheus_client, once per distinct ``name{labels}`` text (``cache``); the value and
    timestamp are the already checked tokens, so a steady stream pays the parser once per series.
    """
    out: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        split = split_sample_line(line)
        reason = _check(split)
        if reason is not None or split is None:
            skipped[reason or "unparseable_line"] += 1
            continue
        key, tokens = split
        series = cache.get(key)
        if series is None:
            series = _parse_series(line)
            if series is None:
                skipped["unparseable_line"] += 1
                continue
            if len(cache) >= SERIES_CACHE_MAX:
                cache.clear()
            cache[key] = series
        ts = int(tokens[1]) if len(tokens) == 2 else None
        out.append((series[0], series[1], _value(tokens[0]), ts))
    return out
