"""How the Slurm source combines its two parts, ``scontrol show node`` (node occupancy and
inventory, ``collectors.slurm_nodes``) and ``sacct`` (allocations, ``collectors.slurm``).

Live, both commands run on every pass. From saved outputs only the files given are read: a
``sinfo_file`` (a saved ``scontrol show node``), a ``sacct_file``, or both. Node records carry
no cluster name, so a cluster must be named whenever node occupancy is read (the allocations'
cluster must match it); ``sacct`` alone may take the cluster from its own output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from collectors.slurm import DEFAULT_LOOKBACK, SacctCollector
from collectors.slurm_nodes import SlurmCollector, SlurmNodesCollector


class ClusterRequired(ValueError):
    """Node occupancy is read but no cluster is named."""


@dataclass(frozen=True)
class SlurmSetup:
    collector: SlurmCollector
    from_files: bool
    """Read from saved outputs: one pass, no repeat."""
    describe: str
    """What is read: the files, or ``scontrol + sacct``."""


def slurm_setup(
    *,
    datacentre: str,
    cluster: str | None,
    interval_s: float,
    sinfo_file: Path | None = None,
    sacct_file: Path | None = None,
    at: datetime | None = None,
    by_partition: bool = False,
    file_tz: str = "UTC",
    state_file: Path | None = None,
    clusters: str | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> SlurmSetup:
    """The Slurm collector for these options (module docstring); raises ``ClusterRequired``
    when node occupancy is read without a cluster."""
    from_files = sacct_file is not None or sinfo_file is not None
    parts: list[SlurmNodesCollector | SacctCollector] = []
    if not from_files or sinfo_file is not None:
        if cluster is None:
            raise ClusterRequired("a cluster is required when node occupancy is read")
        parts.append(
            SlurmNodesCollector(
                datacentre=datacentre,
                cluster=cluster,
                interval_s=interval_s,
                sinfo_file=sinfo_file,
                at=at,
                by_partition=by_partition,
            )
        )
    if not from_files or sacct_file is not None:
        parts.append(
            SacctCollector(
                datacentre=datacentre,
                cluster=cluster,
                sacct_file=sacct_file,
                file_tz=file_tz,
                state_file=state_file,
                clusters=clusters,
                lookback=lookback,
            )
        )
    files = [str(f) for f in (sinfo_file, sacct_file) if f is not None]
    return SlurmSetup(SlurmCollector(parts), from_files, " + ".join(files) or "scontrol + sacct")
