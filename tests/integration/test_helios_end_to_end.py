"""Done-when check: the whole Helios Earth May 2020 trace through the real broker and ingest
gives per-VC monthly allocation rates equal to an independent computation from the raw CSVs."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from collectors.publish import KafkaSink, PublishSettings
from collectors.replay.helios import DEFAULT_HELIOS_DIR, HeliosReplay
from collectors.run import run_collector
from pipeline.ingest import Ingestor, IngestSettings
from warehouse.catalog import connect
from warehouse.reports.utilisation import utilisation_report

pytestmark = pytest.mark.integration


def independent_rates(folder: Path) -> dict[str, float]:
    rates = {}
    for path in sorted(folder.glob("*_cluster_sequence_vc.csv.gz")):
        running = total = 0
        with gzip.open(path, "rt", newline="") as fh:
            for row in csv.DictReader(fh):
                running += int(row["running_gpu_num"])
                total += int(row["total_gpu_num"])
        rates[path.name.split("_")[0]] = running / total
    return rates


def test_helios_month_through_kafka_matches_the_raw_csvs(
    kafka: str, namespace: str, lake: Path
) -> None:
    sink = KafkaSink(PublishSettings(bootstrap=kafka, namespace=namespace))
    stats = run_collector(HeliosReplay(DEFAULT_HELIOS_DIR), sink)
    sink.close()
    assert stats.records == 714_240 == sink.sent_records
    landed = Ingestor(
        IngestSettings(
            bootstrap=kafka,
            lake=lake,
            namespace=namespace,
            group=f"g-{namespace}",
            until_idle_s=3.0,
        )
    ).run()
    assert landed.landed == 714_240 and landed.rejected == 0

    rows = utilisation_report(connect(lake, Path(":memory:")), period="month", by="scope")
    got = {r["scope"]: r for r in rows}
    expected = independent_rates(DEFAULT_HELIOS_DIR)
    assert set(got) == set(expected) and len(expected) == 16
    for vc, rate in expected.items():
        assert got[vc]["period"] == "2020-05"
        assert got[vc]["allocation_rate"] == pytest.approx(rate, abs=1e-9), vc
        assert got[vc]["no_telemetry_share"] == pytest.approx(0.0, abs=1e-9), vc
