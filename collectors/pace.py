"""Pacing for replays: emit trace records at X times real time (or as fast as possible)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def parse_speed(text: str) -> float | None:
    """``--speed`` value: a positive factor, or ``max`` (None = no pacing)."""
    if text.strip().lower() in ("max", "inf", "0"):
        return None
    speed = float(text)
    if speed <= 0:
        raise ValueError("--speed must be positive or 'max'")
    return speed


def paced(
    items: Iterable[tuple[int, T]],
    speed: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Yield items (given as ``(trace_ms, item)`` in time order) at ``speed`` x real time."""
    if speed is None:
        for _, item in items:
            yield item
        return
    start_wall: float | None = None
    start_trace = 0
    for trace_ms, item in items:
        if start_wall is None:
            start_wall, start_trace = clock(), trace_ms
        due = start_wall + (trace_ms - start_trace) / 1000.0 / speed
        delay = due - clock()
        if delay > 0:
            sleep(delay)
        yield item
