"""Writing a generated scenario: telemetry through the backfill sink, vouchers through import.

The inventory, allocations and GPU samples of ``warehouse.vouchers.scenario.build.Scenario`` go
through
``pipeline.backfill.LakeSink`` (the validation, dedup and writing every backfill uses; any
rejected record fails the run). The voucher entities are written as CSV files (lists
``;``-separated, NULL empty) and imported with ``pipeline.entity_import.import_files``, the path
an auditor's files take. Sample ``util`` values are drawn from the ACME Seren quantiles, except
where the scenario planted a telemetry gap or an idle allocation.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.backfill import LakeSink
from pipeline.entities import ENTITIES
from pipeline.entity_import import ImportResult, import_files
from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, Record
from warehouse.vouchers.scenario.model import DATACENTRES, SOURCE, Scenario, util_quantiles


def _samples(
    scenario: Scenario, rng: random.Random, quantiles: Sequence[float]
) -> Iterator[Record]:
    iv = scenario.spec.sample_interval_s * 1000
    gaps = {(aid, lo, hi) for ids, lo, hi in scenario.no_samples for aid in ids}
    idle = {aid: (lo, hi, util) for ids, lo, hi, util in scenario.idle for aid in ids}
    for a in scenario.allocations:
        for g in a.gpus:
            for t in range(a.s_ms, a.e_ms, iv):
                if any(aid == a.allocation_id and lo <= t < hi for aid, lo, hi in gaps):
                    continue
                util = rng.choice(quantiles)
                plan = idle.get(a.allocation_id)
                if plan is not None and plan[0] <= t < plan[1]:
                    util = plan[2]
                yield {
                    "ts": t,
                    "interval_s": float(scenario.spec.sample_interval_s),
                    "datacentre": a.datacentre,
                    "cluster": "main",
                    "node": a.node,
                    "gpu_uuid": g,
                    "gpu_index": int(g.rsplit("-", 1)[1]),
                    "gpu_model": "H800",
                    "util": util,
                    "pod": None,
                    "namespace": None,
                    "job_id": a.allocation_id,
                    "source": SOURCE,
                }


def write_scenario(scenario: Scenario, out: Path) -> ImportResult:
    """Write ``<out>/lake`` (telemetry, then the vouchers imported from ``<out>/vouchers/*.csv``)
    and ``<out>/ground_truth.json`` (the planted findings; empty for a clean scenario)."""
    out = Path(out)
    lake = out / "lake"
    _write_telemetry(scenario, lake)
    result = import_files(lake, _write_voucher_files(scenario, out / "vouchers"))
    _write_ground_truth(scenario, out / "ground_truth.json")
    return result


def _write_telemetry(scenario: Scenario, lake: Path) -> None:
    """Inventory, allocations and GPU samples through the backfill sink; any rejected record
    fails the run."""
    spec = scenario.spec
    sink = LakeSink(lake, f"scenario-{spec.seed}", SOURCE)
    for record in _inventory(scenario):
        sink.add(INVENTORY, record)
    for record in _allocation_records(scenario):
        sink.add(ALLOCATION, record)
    for record in _samples(scenario, random.Random(spec.seed + 1), util_quantiles()):
        sink.add(GPU_SAMPLE, record)
    sink.flush()
    if any(sink.stats.rejected.values()):
        raise RuntimeError(f"scenario records rejected: {dict(sink.stats.rejected)}")


def _inventory(scenario: Scenario) -> Iterator[Record]:
    """Every node of every data centre, present over the whole scenario."""
    spec = scenario.spec
    t0, t1 = scenario.month_bounds[0][1], scenario.month_bounds[-1][2]
    for dc, _, _ in DATACENTRES:
        for n in range(spec.nodes_per_dc):
            yield {
                "datacentre": dc,
                "cluster": "main",
                "node": f"{dc}-n{n:02d}",
                "valid_from": t0,
                "valid_to": t1,
                "gpu_model": "H800",
                "gpu_count": spec.gpus_per_node,
                "source": SOURCE,
            }


def _allocation_records(scenario: Scenario) -> Iterator[Record]:
    for a in scenario.allocations:
        yield {
            "allocation_id": a.allocation_id,
            "datacentre": a.datacentre,
            "cluster": "main",
            "tenant_id": a.tenant_id,
            "event_ts": a.e_ms,
            "job_id": a.allocation_id,
            "gpu_count": float(len(a.gpus)),
            "gpu_uuids": a.gpus,
            "nodes": [a.node],
            "start": a.s_ms,
            "end": a.e_ms,
            "state": "completed",
            "source": SOURCE,
        }


def _write_voucher_files(scenario: Scenario, folder: Path) -> dict[str, list[Path]]:
    """One CSV file per voucher entity in ``folder``; the files as ``import_files`` takes them."""
    files = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, k in ENTITIES.items():
        path = folder / f"{k.table}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(k.names)
            for row in scenario.entities[name]:
                writer.writerow([_cell(row[n]) for n in k.names])
        files[name] = [path]
    return files


def _write_ground_truth(scenario: Scenario, path: Path) -> None:
    spec = scenario.spec
    truth = {
        "seed": spec.seed,
        "tz": spec.tz,
        "months": sorted({c["_month"] for c in scenario.entities["claim"]}),
        "findings": sorted(scenario.ground_truth, key=lambda f: (f["claim_id"], f["finding"])),
    }
    path.write_text(json.dumps(truth, indent=2) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(value)
    return str(value)
