"""scontrol show node -> occupancy + inventory; a saved sacct + scontrol pair backfilled into a
lake gives a utilisation report whose GPU-hours are worked out by hand below."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from collectors.errors import SourceError
from collectors.run import run_collector
from collectors.slurm import SacctCollector
from collectors.slurm_nodes import (
    SCONTROL_COMMAND,
    SlurmNodesCollector,
    parse_node_fields,
    parse_scontrol,
    state_flags,
)
from pipeline.backfill import LakeSink
from pipeline.records import INVENTORY, OCCUPANCY, coerce, parse_ts
from tests.conftest import CannedRun, source_args
from warehouse.catalog import connect
from warehouse.reports.utilisation import utilisation_report

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
MULTI = FIXTURES / "scontrol-show-node.txt"
ONELINE = FIXTURES / "scontrol-show-node-oneliner.txt"
AT = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def test_fields_with_spaces_and_empty_values() -> None:
    f = parse_node_fields(
        "NodeName=gn03 OS=Linux 5.14 #1 SMP AllocTRES= State=MIXED+DRAIN "
        "Reason=bad DIMM [root@2026-06-30T21:00:00] CfgTRES=cpu=32,gres/gpu=4"
    )
    assert f["OS"] == "Linux 5.14 #1 SMP"
    assert f["AllocTRES"] == ""
    assert f["Reason"] == "bad DIMM [root@2026-06-30T21:00:00]"
    assert f["CfgTRES"] == "cpu=32,gres/gpu=4"


def test_state_flags() -> None:
    assert state_flags("MIXED+DRAIN") == {"MIXED", "DRAIN"}
    assert state_flags("DOWN*") == {"DOWN", "NOT_RESPONDING"}
    assert state_flags("IDLE~") == {"IDLE"}


@pytest.mark.parametrize("path", [MULTI, ONELINE], ids=["multi-line", "oneliner"])
def test_each_node_gpu_source(path: Path) -> None:
    snap = parse_scontrol(path.read_text())
    nodes = {n.node: n for n in snap.nodes}
    assert list(nodes) == ["gn01", "gn02", "gn03", "gn04", "cn01"]
    # CfgTRES carries typed and untyped gres/gpu: 8, not 16
    assert (nodes["gn01"].gpus_total, nodes["gn01"].gpus_allocated) == (8, 8)
    assert (nodes["gn02"].gpus_total, nodes["gn02"].gpus_allocated) == (8, 0)
    # no gres/gpu in CfgTRES: Gres / GresUsed; draining: the 1 GPU no job holds is down
    assert (nodes["gn03"].gpus_total, nodes["gn03"].gpus_allocated) == (4, 3)
    assert (nodes["gn03"].gpus_down, nodes["gn03"].gpu_model) == (1, "h100")
    # DOWN* (not responding): all 4 down
    assert (nodes["gn04"].gpus_total, nodes["gn04"].gpus_down) == (4, 4)
    assert nodes["cn01"].gpus_total == 0
    assert nodes["gn01"].partitions == ("gpu", "debug")
    assert snap.skipped == {}


def test_snapshot_records() -> None:
    c = SlurmNodesCollector(datacentre="dc1", cluster="c1", sinfo_file=MULTI, at=AT, interval_s=300)
    out = list(c.collect())
    occ = [r for k, r in out if k is OCCUPANCY]
    inv = {r["node"]: r for k, r in out if k is INVENTORY}
    assert occ == [
        {
            "ts": parse_ts("2026-07-01T00:00:00+00:00"),
            "interval_s": 300.0,
            "datacentre": "dc1",
            "cluster": "c1",
            "scope": None,
            "gpus_total": 24.0,
            "gpus_allocated": 11.0,
            "gpus_down": 5.0,
            "source": "slurm",
        }
    ]
    assert {n: (r["gpu_count"], r["gpu_model"]) for n, r in inv.items()} == {
        "gn01": (8, "a100"),
        "gn02": (8, "a100"),
        "gn03": (4, "h100"),
        "gn04": (4, "v100"),
    }
    for k, r in out:
        assert coerce(k, r) == r
    assert c.skipped["nodes_without_gpus"] == 1
    # the same nodes again: occupancy again, inventory only on change
    again = list(c.collect())
    assert [k for k, _ in again] == [OCCUPANCY]


def test_by_partition_counts_each_node_once() -> None:
    c = SlurmNodesCollector(
        datacentre="dc1", cluster="c1", sinfo_file=ONELINE, at=AT, by_partition=True
    )
    occ = [r for k, r in c.collect() if k is OCCUPANCY]
    assert [(r["scope"], r["gpus_total"], r["gpus_allocated"]) for r in occ] == [
        ("gpu", 24.0, 11.0)
    ]


def test_live_scrape_runs_scontrol_and_stamps_the_clock() -> None:
    fake = CannedRun([ONELINE.read_text()])
    c = SlurmNodesCollector(datacentre="dc1", cluster="c1", run=fake, clock=lambda: 1.8e9)
    out = list(c.collect())
    assert fake.calls == [list(SCONTROL_COMMAND)]
    assert out[0][1]["ts"] == 1_800_000_000_000


def test_down_and_garbage_sources_raise_source_errors() -> None:
    fake = CannedRun(
        [SourceError("scontrol: exit status 1: Unable to contact slurm controller"), "garbage\n"]
    )
    c = SlurmNodesCollector(datacentre="dc1", cluster="c1", run=fake)
    with pytest.raises(SourceError, match="Unable to contact"):
        list(c.collect())
    with pytest.raises(SourceError, match="no node in the answer"):
        list(c.collect())


def test_backfilled_sacct_and_scontrol_pair_gives_hand_computed_gpu_hours(lake: Path) -> None:
    """sacct-quirks.txt + one scontrol snapshot at 2026-07-01 00:00 UTC held for 24 h.

    Allocated GPU-hours on 2026-07-01 (UTC), job by job:
      1001       8 GPUs (typed + untyped, once)   01:00-05:00   8 x 4   = 32
      1002       3 GPUs (a100=2 + v100=1)         06:00-06:30   3 x 0.5 =  1.5
      1003_4     1 GPU                            02:00-03:00   1 x 1   =  1
      1003_5..7  pending, never started                                   0
      1004       4 GPUs, RUNNING since 04:00, counted to the horizon = end of the snapshot's
                 coverage, 24:00                                4 x 20  = 80
      1005@...   2 GPUs, requeued run             00:30-01:00   2 x 0.5 =  1
      1005       2 GPUs, final run                01:30-02:30   2 x 1   =  2
      1006       state FOO: skipped (counted)                             0
                                                                  total = 117.5
    Capacity: 24 GPUs x 24 h = 576. Busy: no GPU samples -> NULL.
    """
    sink = LakeSink(lake, "test-slurm-pair", "test")
    sacct = SacctCollector(datacentre="dc1", cluster="c1", sacct_file=FIXTURES / "sacct-quirks.txt")
    nodes = SlurmNodesCollector(
        datacentre="dc1", cluster="c1", sinfo_file=MULTI, at=AT, interval_s=86400
    )
    assert run_collector(sacct, sink).records == 9
    assert run_collector(nodes, sink).records == 5
    assert dict(sink.stats.rejected) == {"allocation": 0, "occupancy": 0, "inventory": 0}
    con = connect(lake, ":memory:")
    rows = utilisation_report(
        con,
        period="day",
        by="cluster",
        date_from=date(2026, 7, 1),
        date_to=date(2026, 7, 1),
        tz="UTC",
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["allocated_gpu_h"] == pytest.approx(117.5)
    assert row["capacity_gpu_h"] == pytest.approx(576.0)
    assert row["allocation_rate"] == pytest.approx(117.5 / 576)
    assert row["busy_gpu_h"] is None
    assert row["sources"] == "capacity=occupancy;allocated=allocation;busy=none"


def test_cli_backfill_slurm_from_saved_files() -> None:
    a = source_args(
        ["slurm", "--datacentre", "dc1", "--cluster", "c1",
         "--sacct-file", str(FIXTURES / "sacct-quirks.txt"),
         "--sinfo-file", str(MULTI), "--at", "2026-07-01T00:00:00Z"]
    )  # fmt: skip
    built = a.build(a)
    assert built.repeat_every_s is None  # saved files: one pass
    out = list(built.collector.collect())
    assert [k.name for k, _ in out].count("allocation") == 9
    occ = [r for k, r in out if k is OCCUPANCY]
    assert occ[0]["ts"] == parse_ts("2026-07-01T00:00:00Z") and occ[0]["cluster"] == "c1"


def test_cli_live_slurm_loops_and_one_failing_part_keeps_the_other() -> None:
    a = source_args(["slurm", "--interval", "120"])
    with pytest.raises(SystemExit, match="--cluster is required"):
        a.build(a)  # occupancy and allocations must name the same cluster
    a = source_args(["slurm", "--interval", "120", "--cluster", "c1"])
    built = a.build(a)
    assert built.repeat_every_s == 120.0
    nodes, sacct = built.collector.parts
    nodes._run = CannedRun([ONELINE.read_text()])
    sacct._run = CannedRun([SourceError("sacct: not found on this host")])
    got: list[str] = []
    with pytest.raises(SourceError, match="sacct: not found"):
        for k, _ in built.collector.collect():
            got.append(k.name)
    assert got == ["occupancy"] + ["inventory"] * 4
