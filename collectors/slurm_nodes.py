"""Slurm node GPUs -> ``occupancy`` (capacity, allocated, down) and ``inventory``.

Source: ``scontrol show node --oneliner`` (live, ``TZ=UTC``), or a saved ``scontrol show node``
output in either its one-line or its default multi-line form (``--sinfo-file``). ``sinfo``'s
``%``-formats do not print GPUs in use, so the node records of ``scontrol`` are read instead.

Per node:
- GPUs configured: ``CfgTRES`` ``gres/gpu`` (untyped, else the sum of typed, as in sacct's
  TRES), else the ``Gres`` count when ``gres/gpu`` is not in ``AccountingStorageTRES``
  (``Gres=gpu:h100:4(S:0)``);
- GPUs allocated: ``AllocTRES`` by the same rule when ``CfgTRES`` carries GPUs, else the
  ``GresUsed`` count (``gpu:h100:3(IDX:0-2)``);
- GPUs down: on a node whose state has a DOWN / DRAIN / DRAINED / DRAINING / FAIL / FAILING /
  NOT_RESPONDING / INVAL flag or the ``*`` (not responding) suffix, its GPUs that no job holds
  (a draining node's running jobs keep their GPUs until they end).

One snapshot gives one whole-cluster ``occupancy`` record (scope NULL), or with
``by_partition`` one per partition, each node counted once in the first partition it lists
(so partition rows add up to the cluster). ``inventory`` records are emitted for GPU nodes the
first time they are seen and whenever their GPU count or model changes.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.base import Emitted
from collectors.command import Runner
from collectors.errors import SourceError
from collectors.slurm import SacctCollector, run_command
from collectors.slurm_fields import SacctLineError, gres_gpus, tres_gpu_count
from pipeline.records import INVENTORY, OCCUPANCY, Record

log = logging.getLogger(__name__)

SOURCE = "slurm"
SCONTROL_COMMAND = ("scontrol", "show", "node", "--oneliner")
DOWN_FLAGS = frozenset(
    {"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "NOT_RESPONDING", "INVAL"}
)
_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=")
_STATE_SUFFIXES = "*~#!%$@^-"


def parse_node_fields(text: str) -> dict[str, str]:
    """``Key=Value Key=Value with spaces ...`` -> dict; a value runs up to the next ``Key=``."""
    matches = list(_KEY.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out[m.group(1)] = text[m.end() : end].strip()
    return out


def split_nodes(text: str) -> list[str]:
    """scontrol output (one-line or multi-line form) -> one text per node (``NodeName=...``)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("NodeName="):
            blocks.append([stripped])
        elif stripped and blocks:
            blocks[-1].append(stripped)
    return [" ".join(b) for b in blocks]


def state_flags(state: str) -> set[str]:
    """``MIXED+DRAIN`` -> {MIXED, DRAIN}; ``DOWN*`` -> {DOWN, NOT_RESPONDING}."""
    flags: set[str] = set()
    for part in state.upper().split("+"):
        bare = part.rstrip(_STATE_SUFFIXES)
        if part.endswith("*"):
            flags.add("NOT_RESPONDING")
        if bare:
            flags.add(bare)
    return flags


@dataclass(frozen=True)
class NodeGpus:
    node: str
    partitions: tuple[str, ...]
    state: str
    gpus_total: int
    gpus_allocated: int
    gpus_down: int
    gpu_model: str | None


def parse_node(text: str) -> NodeGpus:
    """One node's fields -> its GPUs; raises ``SacctLineError`` on unreadable GPU fields."""
    f = parse_node_fields(text)
    name = f.get("NodeName", "")
    if not name:
        raise SacctLineError("no_node_name", text[:80])
    cfg = tres_gpu_count(f.get("CfgTRES", ""))
    gres = gres_gpus(f.get("Gres", ""))
    if cfg > 0:
        total, allocated = cfg, tres_gpu_count(f.get("AllocTRES", ""))
    else:
        total = sum(n for _, n in gres)
        allocated = sum(n for _, n in gres_gpus(f.get("GresUsed", "")))
    allocated = min(allocated, total)
    state = f.get("State", "")
    down = total - allocated if state_flags(state) & DOWN_FLAGS else 0
    models = sorted({t for t, n in gres if t and n > 0})
    partitions = tuple(p for p in f.get("Partitions", "").split(",") if p)
    return NodeGpus(
        name, partitions, state, total, allocated, down, "+".join(models) if models else None
    )


@dataclass
class Snapshot:
    nodes: list[NodeGpus]
    skipped: dict[str, int]


def parse_scontrol(text: str) -> Snapshot:
    nodes: list[NodeGpus] = []
    skipped: Counter[str] = Counter()
    for block in split_nodes(text):
        try:
            nodes.append(parse_node(block))
        except SacctLineError as exc:
            skipped[exc.reason] += 1
            log.warning("scontrol node skipped (%s): %.120s", exc, block)
    return Snapshot(nodes, dict(skipped))


def occupancy(
    nodes: list[NodeGpus],
    *,
    ts_ms: int,
    interval_s: float,
    datacentre: str,
    cluster: str,
    by_partition: bool = False,
) -> list[Record]:
    """One occupancy record per scope (the cluster, or each node's first partition)."""
    sums: dict[str | None, list[int]] = {}
    for n in nodes:
        if n.gpus_total == 0:
            continue
        scope = (n.partitions[0] if n.partitions else None) if by_partition else None
        acc = sums.setdefault(scope, [0, 0, 0])
        acc[0] += n.gpus_total
        acc[1] += n.gpus_allocated
        acc[2] += n.gpus_down
    return [
        {
            "ts": ts_ms,
            "interval_s": float(interval_s),
            "datacentre": datacentre,
            "cluster": cluster,
            "scope": scope,
            "gpus_total": float(total),
            "gpus_allocated": float(allocated),
            "gpus_down": float(down),
            "source": SOURCE,
        }
        for scope, (total, allocated, down) in sums.items()
    ]


def inventory(node: NodeGpus, *, ts_ms: int, datacentre: str, cluster: str) -> Record:
    return {
        "datacentre": datacentre,
        "cluster": cluster,
        "node": node.node,
        "valid_from": ts_ms,
        "valid_to": None,
        "gpu_model": node.gpu_model,
        "gpu_count": node.gpus_total,
        "source": SOURCE,
    }


class SlurmNodesCollector:
    """One ``collect()`` = one ``scontrol show node`` snapshot (or the saved file)."""

    def __init__(
        self,
        *,
        datacentre: str,
        cluster: str,
        interval_s: float = 60.0,
        sinfo_file: Path | None = None,
        at: datetime | None = None,
        by_partition: bool = False,
        run: Runner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.datacentre = datacentre
        self.cluster = cluster
        self.interval_s = interval_s
        self.sinfo_file = sinfo_file
        self.at = at
        self.by_partition = by_partition
        self._run = run or run_command
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self._known: dict[str, tuple[int, str | None]] = {}

    def _read(self) -> tuple[str, str, int]:
        if self.sinfo_file is not None:
            try:
                text = self.sinfo_file.read_text(encoding="utf-8")
                when = self.at.timestamp() if self.at else self.sinfo_file.stat().st_mtime
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.sinfo_file}: {type(exc).__name__}: {exc}") from exc
            return text, str(self.sinfo_file), int(round(when * 1000))
        ts_ms = int(round(self._clock() * 1000))
        try:
            text = self._run(SCONTROL_COMMAND)
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"scontrol: {type(exc).__name__}: {exc}") from exc
        return text, " ".join(SCONTROL_COMMAND), ts_ms

    def collect(self) -> Iterator[Emitted]:
        text, where, ts_ms = self._read()
        snap = parse_scontrol(text)
        if not snap.nodes:
            first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
            raise SourceError(
                f"{where}: no node in the answer (not scontrol show node output?"
                f" first line: {first!r}; skipped: {snap.skipped})"
            )
        self.skipped.update(snap.skipped)
        self.skipped["nodes_without_gpus"] += sum(1 for n in snap.nodes if n.gpus_total == 0)
        site: Mapping[str, str] = {"datacentre": self.datacentre, "cluster": self.cluster}
        for record in occupancy(
            snap.nodes,
            ts_ms=ts_ms,
            interval_s=self.interval_s,
            by_partition=self.by_partition,
            **site,
        ):
            yield OCCUPANCY, record
        for node in snap.nodes:
            if node.gpus_total == 0:
                continue
            seen = (node.gpus_total, node.gpu_model)
            if self._known.get(node.node) != seen:
                self._known[node.node] = seen
                yield INVENTORY, inventory(node, ts_ms=ts_ms, **site)


class SlurmCollector:
    """``collect slurm``: node occupancy/inventory and sacct allocations in one pass.

    Live, both commands run each pass; from saved outputs, only the files given are read. When
    one part fails, the other part's records still go out and the failure is raised at the end
    of the pass (so the scrape loop counts it and goes on).
    """

    def __init__(self, parts: list[SlurmNodesCollector | SacctCollector]) -> None:
        if not parts:
            raise ValueError("SlurmCollector needs at least one part")
        self.parts = parts

    def collect(self) -> Iterator[Emitted]:
        errors: list[SourceError] = []
        for part in self.parts:
            try:
                yield from part.collect()
            except SourceError as exc:
                errors.append(exc)
        if errors:
            raise SourceError("; ".join(str(e) for e in errors))
