"""How the Slurm source combines scontrol node occupancy and sacct allocations
(``collectors.slurm_setup``): which parts run, live or from saved files, and the cluster rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from collectors.slurm import SacctCollector
from collectors.slurm_nodes import SlurmNodesCollector
from collectors.slurm_setup import ClusterRequired, SlurmSetup, slurm_setup


def kinds(setup: SlurmSetup) -> list[type]:
    return [type(p) for p in setup.collector.parts]


def test_live_runs_both_parts_and_repeats() -> None:
    setup = slurm_setup(datacentre="dc", cluster="c1", interval_s=120.0)
    assert kinds(setup) == [SlurmNodesCollector, SacctCollector]
    assert (setup.from_files, setup.describe) == (False, "scontrol + sacct")
    nodes, sacct = setup.collector.parts
    assert isinstance(nodes, SlurmNodesCollector) and isinstance(sacct, SacctCollector)
    assert (nodes.cluster, nodes.interval_s, sacct.cluster) == ("c1", 120.0, "c1")


def test_saved_files_read_only_what_is_given(tmp_path: Path) -> None:
    sinfo, sacct = tmp_path / "nodes.txt", tmp_path / "sacct.txt"
    both = slurm_setup(
        datacentre="dc", cluster="c1", interval_s=86400.0, sinfo_file=sinfo, sacct_file=sacct
    )
    assert kinds(both) == [SlurmNodesCollector, SacctCollector]
    assert (both.from_files, both.describe) == (True, f"{sinfo} + {sacct}")
    only_nodes = slurm_setup(datacentre="dc", cluster="c1", interval_s=60.0, sinfo_file=sinfo)
    assert kinds(only_nodes) == [SlurmNodesCollector]
    only_sacct = slurm_setup(
        datacentre="dc", cluster=None, interval_s=60.0, sacct_file=sacct, lookback=timedelta(1)
    )
    assert kinds(only_sacct) == [SacctCollector]  # sacct alone may name its own cluster
    assert only_sacct.describe == str(sacct)


@pytest.mark.parametrize("saved", [False, True])
def test_node_occupancy_needs_a_cluster(tmp_path: Path, saved: bool) -> None:
    sinfo = tmp_path / "nodes.txt" if saved else None
    with pytest.raises(ClusterRequired, match="cluster is required"):
        slurm_setup(datacentre="dc", cluster=None, interval_s=60.0, sinfo_file=sinfo)
