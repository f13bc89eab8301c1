"""The exporter's ``gpuledger_audit_restated_findings`` gauge: per pack registered in the lake
(``<lake>/_audit/packs/<month>/<scope>/``, docs/audit-packs.md) and programme, the findings that
are new, vanished or changed in the audit of the lake as it is now.

Re-auditing a month at every scrape would cost one audit per pack per scrape. ``RestatedFindings``
recomputes only when the key changes: the lake's table versions (the exporter's snapshot) and
the registered manifests' hashes; otherwise it serves the cached rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from warehouse.vouchers.audit import audit
from warehouse.vouchers.audit_format import open_snapshot
from warehouse.vouchers.pack import MANIFEST, PackError, registered_packs
from warehouse.vouchers.restate import restated_counts, state_from_pack

log = logging.getLogger(__name__)

METRIC = "gpuledger_audit_restated_findings"
LABELS = ("month", "pack", "programme")


@dataclass(frozen=True)
class Restated:
    month: str
    pack: str
    programme: str
    findings: int


def restated_rows(lake: Path, pack: Path, versions: Mapping[str, int]) -> list[Restated]:
    """Restated findings per programme of one registered pack against the lake at
    ``versions``."""
    then, manifest = state_from_pack(pack)
    con = open_snapshot(lake, dict(versions))
    try:
        now = audit(
            con,
            month=manifest["month"],
            programme=manifest["programme"],
            tz=manifest["tz"],
            thresholds=then.thresholds,
        )
    finally:
        con.close()
    return [
        Restated(manifest["month"], pack.name, programme, n)
        for programme, n in restated_counts(then.report, now).items()
    ]


class RestatedFindings:
    """The gauge, computed once per change of the lake's versions or of the registered packs."""

    def __init__(self, lake: Path) -> None:
        self.lake = Path(lake)
        self._key: tuple[object, ...] | None = None
        self._rows: list[Restated] = []
        self.computations = 0
        """How often the rows were recomputed (the cache's misses)."""

    def _cache_key(self, packs: list[Path], versions: Mapping[str, int]) -> tuple[object, ...]:
        manifests = tuple(
            (str(p), hashlib.sha256((p / MANIFEST).read_bytes()).hexdigest()) for p in packs
        )
        return (tuple(sorted(versions.items())), manifests)

    def rows(self, versions: Mapping[str, int]) -> list[Restated]:
        packs = registered_packs(self.lake)
        key = self._cache_key(packs, versions)
        if key != self._key:
            rows: list[Restated] = []
            for pack in packs:
                try:
                    rows += restated_rows(self.lake, pack, versions)
                except PackError as exc:
                    log.warning("registered audit pack %s skipped: %s", pack, exc)
                except Exception:  # one unreadable pack must not take the other gauges down
                    log.exception("registered audit pack %s could not be compared", pack)
            self._rows, self._key = rows, key
            self.computations += 1
        return self._rows

    def family(self, versions: Mapping[str, int]) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            METRIC,
            "Findings of a registered signed audit pack that are new, vanished or changed in "
            "the audit of the lake now (late or corrected records), per programme.",
            labels=list(LABELS),
        )
        for r in self.rows(versions):
            gauge.add_metric([r.month, r.pack, r.programme], r.findings)
        return gauge
