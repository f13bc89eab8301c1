"""What the replays of a trace folder whose times count from the trace's start share: the
folder, the instant second 0 maps to, the pace and the site their records name."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar

from pipeline.records import parse_ts


class AnchoredReplay:
    """A replay of the trace in ``data_dir`` with second 0 at ``start`` (``start_ms``, epoch
    ms), paced at ``speed`` (None: as fast as possible), its records naming ``datacentre`` and
    ``cluster`` (the class's ``DATACENTRE`` and ``CLUSTER`` unless given). ``collect()``, the
    subclass's, fills ``skipped``: the rows not emitted, by reason."""

    DATACENTRE: ClassVar[str]
    CLUSTER: ClassVar[str]

    def __init__(
        self,
        data_dir: Path,
        *,
        start: datetime,
        speed: float | None = None,
        datacentre: str | None = None,
        cluster: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.start_ms = parse_ts(start)  # refuses a naive datetime
        self.speed = speed
        self.datacentre = self.DATACENTRE if datacentre is None else datacentre
        self.cluster = self.CLUSTER if cluster is None else cluster
        self.skipped: dict[str, int] = {}
