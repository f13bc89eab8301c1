"""ingest keeps the rollups current by itself: after its background compaction it rolls up the
closed partitions, and reports read them with the raw path's figures."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.ingest import Ingestor, IngestSettings
from tests.integration.test_ingest import publish
from warehouse.catalog import connect, refresh_with_state
from warehouse.catalog.rollup_build import build_rollups
from warehouse.reports.utilisation import utilisation_report

pytestmark = pytest.mark.integration


def test_ingest_rolls_up_closed_partitions(kafka: str, namespace: str, lake: Path) -> None:
    publish(kafka, namespace, 4_000, gpus=5)  # 800 minutes from 2020-04-30 16:00 UTC: 2 days
    settings = IngestSettings(
        bootstrap=kafka,
        lake=lake,
        namespace=namespace,
        group=f"g-{namespace}",
        until_idle_s=4.0,
        compact_every_s=0.5,
        maintain=build_rollups,
    )
    assert Ingestor(settings).run().landed == 4_000
    _, state = refresh_with_state(duckdb.connect(), lake)
    assert len(state.stats) == 2 and set(state.fresh) == set(state.stats)
    rolled = utilisation_report(connect(lake, ":memory:"), period="day", by="cluster")
    raw = utilisation_report(
        connect(lake, ":memory:", rollups=False), period="day", by="cluster", source="samples"
    )
    assert [r["busy_gpu_h"] for r in rolled] == pytest.approx([r["busy_gpu_h"] for r in raw])
    assert sum(r["capacity_gpu_h"] for r in rolled) == pytest.approx(4_000 / 60)
