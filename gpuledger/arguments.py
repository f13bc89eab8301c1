"""Argument types shared by the sub-commands' parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime


def instant(example: str = "2020-05-01T00:00:00Z") -> Callable[[str], datetime]:
    """An argparse ``type`` for an ISO-8601 instant with a UTC offset (``Z`` or ``+08:00``); a
    naive time is refused with ``example`` as a hint."""

    def parse(text: str) -> datetime:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. {example}")
        return value

    parse.__name__ = "instant"  # argparse names the type in "invalid instant value"
    return parse
