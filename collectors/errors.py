"""Errors a collector raises about its source (as opposed to one bad record).

A ``SourceError`` is *transient* in the dlt sense: the source is down, unreachable or answered
something that is not its format. The caller logs it, counts it and tries again on the next
interval; nothing from that attempt is emitted. A single bad line inside an otherwise good answer
is not a ``SourceError``: collectors skip it and count it by reason.
"""

from __future__ import annotations

from pipeline.errors import TransientError


class SourceError(TransientError, RuntimeError):
    """The source could not be read (down, refused, HTTP error, not its format).

    The message names the source (URL or path) and what happened.
    """
