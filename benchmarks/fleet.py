"""A synthetic fleet through the project's own write and report path, checked against pandas.

Generates one sample per GPU every ``--step`` seconds for ``--days`` days (``--gpus`` GPUs,
8 per node, over 2 data centres x 2 clusters; util from a fixed seeded distribution, in whole
percent as DCGM reports it; a few allocations per cluster) as a Parquet records file written in
chunks (with ``--chunk-days D``, one file per D days, each generated, loaded and deleted in
turn), then, each step in its own process (wall time, CPU time and peak RSS from
``os.wait4``):

1. ``gpuledger backfill --lake L records --kind gpu_sample --file F`` (and the allocations);
2. the monthly report on the raw path (every sample clipped to every period, no rollup);
3. ``gpuledger lake rollup --lake L`` (the 15-minute GPU bins of every closed partition);
4. ``gpuledger report utilisation --lake L --period month --by cluster --format json``, which
   reads the rollup (with ``--compact``, again after ``gpuledger lake compact``);
5. a naive pandas version of the same figures from the same file: coverage of a sample at ts
   is [ts, ts + min(interval, next ts - ts)) per GPU; capacity = covered GPU-hours, busy =
   sum util x covered hours, allocated = gpu_count x held hours, busy allocated = busy of the
   samples an allocation holds; all clipped to local (Asia/Shanghai) months.

All must agree to 1e-9 relative. Not a test. ``--samples FILE`` reuses a file written before
(by ``--keep``, with the same fleet options) instead of generating one; ``--only backfill``
stops after step 1, ``--only rollup`` after step 3 (skipping step 2), to time one step;
``--no-compare`` skips steps 2 and 5 (a fleet whose raw rows do not fit in memory).

    .venv/bin/python benchmarks/fleet.py --gpus 100 --days 7 --step 15 [--lake DIR] [--keep]
        [--compact] [--samples FILE] [--only backfill|rollup] [--no-compare]
        [--chunk-days D]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import fleet_audit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TZ = "Asia/Shanghai"
START = datetime(2025, 3, 28, tzinfo=ZoneInfo(TZ))  # a 7-day run crosses into April
DCS, CLUSTERS = ("dc-a", "dc-b"), ("c1", "c2")
FIGURES = ("capacity_gpu_h", "allocated_gpu_h", "busy_gpu_h", "busy_allocated_gpu_h")
H = 3_600_000.0


def site(gpu: int, gpus: int) -> tuple[str, str, str]:
    """(datacentre, cluster, node) of a GPU: 8 per node, nodes dealt round the 4 clusters."""
    node = gpu // 8
    c = node % (len(DCS) * len(CLUSTERS))
    return DCS[c // len(CLUSTERS)], CLUSTERS[c % len(CLUSTERS)], f"node-{node:04d}"


def generate(out: Path, gpus: int, step: float, first: int, steps: int) -> int:
    """Write the samples of steps ``first`` to ``first + steps - 1`` (a step is one sample
    per GPU) in chunks of about 500k rows; return the number of rows. Values are quantised
    as DCGM reports them: util in whole percent, temperature in whole degrees, power in
    tenths of a watt."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.records import GPU_SAMPLE

    rng = np.random.default_rng([20250328, first])
    schema = GPU_SAMPLE.arrow_schema()
    g = np.arange(gpus)
    sites = [site(i, gpus) for i in g]
    dc, cl, node = (np.array([s[k] for s in sites]) for k in range(3))
    uuid = np.array([f"GPU-{i:06d}" for i in g])
    # odd GPUs report an interval longer than their spacing: coverage stops at the next sample
    interval = np.where(g % 2 == 1, step * 1.2, step)
    t0 = int(START.timestamp() * 1000)
    per_chunk = max(1, 500_000 // gpus)
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for at in range(first, first + steps, per_chunk):
            n_steps = min(per_chunk, first + steps - at)
            k = np.arange(at, at + n_steps).repeat(gpus)
            i = np.tile(g, n_steps)
            keep = rng.random(len(i)) >= 0.01  # 1% of samples lost: gaps are not covered
            k, i = k[keep], i[keep]
            n = len(i)
            busy = rng.random(n) >= 0.3  # 30% idle, the rest Beta(2, 1.5)
            util = np.where(busy, np.round(rng.beta(2.0, 1.5, n) * 100) / 100, 0.0)
            cols = {
                "ts": t0 + (k * step * 1000).astype(np.int64) + rng.integers(0, 500, n),
                "interval_s": interval[i],
                "datacentre": dc[i],
                "cluster": cl[i],
                "node": node[i],
                "gpu_uuid": uuid[i],
                "gpu_index": i % 8,
                "gpu_model": np.full(n, "NVIDIA H100 80GB HBM3"),
                "util": util,
                "mem_used_bytes": (util * (80 << 30)).astype(np.int64),
                "mem_total_bytes": np.full(n, 80 << 30),
                "power_w": np.round(700.0 + 6300.0 * util) / 10,
                "temp_c": np.round(35.0 + 40.0 * util),
                "source": np.full(n, "bench"),
            }
            arrays = [
                pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type)
                for f in schema
            ]
            writer.write_table(pa.table(arrays, schema=schema))
            rows += n
    return rows


def allocations(gpus: int, days: float) -> list[dict]:
    """Three completed allocations per cluster, on its first node's GPUs."""
    t0, span = int(START.timestamp() * 1000), int(days * 86_400_000)
    out = []
    for c, (dc, cl) in enumerate((d, c) for d in DCS for c in CLUSTERS):
        members = [i for i in range(gpus) if site(i, gpus)[:2] == (dc, cl)][:8]
        for j in range(3 if members else 0):
            held = members[: max(1, len(members) - j)]
            start = t0 + span * (1 + 3 * j) // 10 + c * 3_600_000
            end = start + span // 5 + j * 1_800_000
            out.append(
                {
                    "allocation_id": f"job-{c}-{j}",
                    "datacentre": dc,
                    "cluster": cl,
                    "tenant_id": f"t-{j}",
                    "event_ts": end,
                    "gpu_count": float(len(held)),
                    "gpu_uuids": [f"GPU-{i:06d}" for i in held],
                    "start": start,
                    "end": end,
                    "state": "COMPLETED",
                    "source": "bench",
                }
            )
    return out


def naive(samples: list[Path], allocs: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """The report's figures in plain pandas, per (period, datacentre, cluster)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ["ts", "interval_s", "datacentre", "cluster", "gpu_uuid", "util"]
    t = pa.concat_tables(
        pq.read_table(f, columns=cols, read_dictionary=cols[2:5]) for f in samples
    ).unify_dictionaries()
    ms = t["ts"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    df = t.set_column(0, "ts", ms).to_pandas()
    df = df.sort_values(["datacentre", "cluster", "gpu_uuid", "ts"], kind="stable")
    df = df.drop_duplicates(["datacentre", "cluster", "gpu_uuid", "ts"], keep="last")
    nxt = df.groupby(["datacentre", "cluster", "gpu_uuid"], sort=False)["ts"].shift(-1)
    iv = (df["interval_s"] * 1000).round().astype("int64")
    s = df["ts"].to_numpy()
    e = s + np.minimum(iv.to_numpy(), (nxt - df["ts"]).fillna(iv).to_numpy().astype("int64"))
    util = df["util"].to_numpy()
    al = pd.read_json(allocs, lines=True)
    held = np.zeros(len(df), dtype=bool)
    for a in al.itertuples():
        held |= df["gpu_uuid"].isin(a.gpu_uuids).to_numpy() & (s >= a.start) & (s < a.end)
    tz = ZoneInfo(TZ)
    lo = pd.Timestamp(int(s.min()), unit="ms", tz="UTC").tz_convert(tz)
    hi = pd.Timestamp(int(s.max()), unit="ms", tz="UTC").tz_convert(tz)
    month = pd.Timestamp(year=lo.year, month=lo.month, day=1, tz=tz)
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    while month <= hi:
        following = month + pd.DateOffset(months=1)
        p0, p1 = month.value // 10**6, following.value // 10**6
        h = np.clip(np.minimum(e, p1) - np.maximum(s, p0), 0, None) / H
        key = [df["datacentre"].to_numpy(), df["cluster"].to_numpy()]
        per = pd.DataFrame({"cap": h, "busy": util * h, "held": np.where(held, util * h, 0.0)})
        sums = per.groupby(key).sum()
        ah = np.clip(np.minimum(al["end"], p1) - np.maximum(al["start"], p0), 0, None) / H
        alloc = (al["gpu_count"] * ah).groupby([al["datacentre"], al["cluster"]]).sum()
        for (dc, cl), r in sums.iterrows():
            out[(month.strftime("%Y-%m"), dc, cl)] = {
                "capacity_gpu_h": r["cap"],
                "allocated_gpu_h": float(alloc.get((dc, cl), 0.0)),
                "busy_gpu_h": r["busy"],
                "busy_allocated_gpu_h": r["held"],
            }
        month = following
    return out


def raw_path(lake: Path) -> list[dict]:
    """The monthly report with every figure from raw rows: no rollup, every sample clipped."""
    from warehouse.catalog import connect
    from warehouse.reports.utilisation import utilisation_report

    con = connect(lake, ":memory:", rollups=False)
    return utilisation_report(con, period="month", by="cluster", tz=TZ, source="samples")


def keyed(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["period"], r["datacentre"], r["cluster"]): r for r in rows}


def compare(name: str, ours: dict, theirs: dict) -> float:
    """The worst relative difference of the figures; exits when above 1e-9."""
    worst = 0.0
    if set(ours) != set(theirs):
        sys.exit(f"{name}: different rows: {sorted(ours)} vs {sorted(theirs)}")
    for key in sorted(ours):
        for f in FIGURES:
            x, y = ours[key][f], theirs[key][f]
            rel = fleet_audit.relative(x, y)
            worst = max(worst, rel)
            if rel > 1e-9:
                sys.exit(f"{name} {key} {f}: {x!r} vs {y!r} (relative {rel:.2e})")
    return worst


def run(argv: list[str], log: Path) -> tuple[float, int, str, float]:
    """Run a child; return (wall seconds, peak RSS bytes, stdout, CPU seconds, user and
    system); stderr goes to ``log``."""
    started = time.perf_counter()
    with open(log, "ab") as err, tempfile.TemporaryFile() as out:
        p = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        _pid, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])}... failed ({p.returncode}); see {log}")
    return elapsed, usage.ru_maxrss * 1024, text, usage.ru_utime + usage.ru_stime


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuledger.cli", *args]


def me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def fleet_args(a: argparse.Namespace) -> list[str]:
    """The fleet options of this run, for a worker process to rebuild the same fleet."""
    return ["--gpus", str(a.gpus), "--days", str(a.days), "--step", str(a.step)]


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=100)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--step", type=float, default=15.0, help="seconds between samples")
    p.add_argument("--lake", type=Path, help="lake folder (default: in a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--compact", action="store_true", help="also compact the lake and report again")
    p.add_argument("--samples", type=Path, help="reuse this samples file (same fleet options)")
    p.add_argument("--only", choices=("backfill", "rollup"), help="stop after this step")
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the raw-path report and pandas (for fleets whose raw rows do not fit in RAM)",
    )
    p.add_argument(
        "--chunk-days",
        type=float,
        help="generate and backfill one records file per this many days (each deleted once "
        "loaded unless --keep or compared): a fleet whose one file would not fit on disk",
    )
    p.add_argument(
        "--reuse-lake",
        action="store_true",
        help="--lake holds this fleet, backfilled and rolled up by an earlier run with the same "
        "fleet options: only import the voucher records and time the report and the audit "
        "(implies --no-compare)",
    )
    p.add_argument(
        "--raw-audit",
        action="store_true",
        help="also attribute the audit's claims on the raw path with --no-compare (its "
        "samples are those of the allocated GPUs only)",
    )
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.reuse_lake and not (a.lake and (a.lake / "gpu_samples").is_dir()):
        p.error("--reuse-lake needs --lake naming a lake this benchmark filled before")
    a.no_compare = a.no_compare or a.reuse_lake
    return a


def worker(a: argparse.Namespace) -> int:
    """A step in its own process."""
    if a.worker[0] == "generate":
        at, count = int(a.worker[2]), int(a.worker[3])
        print(generate(Path(a.worker[1]), a.gpus, a.step, at, count))
    elif a.worker[0] == "raw":
        print(json.dumps(raw_path(Path(a.worker[1])), default=str))
    elif a.worker[0] == "attribution":
        lake, month, source = Path(a.worker[1]), a.worker[2], a.worker[3]
        print(json.dumps(fleet_audit.attribution(lake, month, TZ, source), default=str))
    else:
        got = naive([Path(f) for f in a.worker[2:]], Path(a.worker[1]))
        print(json.dumps([[*k, v] for k, v in got.items()]))
    return 0


def load(a: argparse.Namespace, work: Path, lake: Path, log: Path) -> tuple[list[Path], int]:
    """Step 1: generate and backfill the samples (one file, or one per ``--chunk-days``) and the
    allocations; return the samples files kept and the number of samples."""
    fleet = fleet_args(a)
    steps = int(a.days * 86_400 / a.step)
    per_file = int(a.chunk_days * 86_400 / a.step) if a.chunk_days else steps
    keep_files = not a.no_compare or a.keep
    files: list[Path] = []
    rows = bf_rss = 0
    bf_wall = bf_cpu = 0.0
    args = ["backfill", "--lake", str(lake), "records", "--kind"]
    for first in range(0, steps, per_file):
        if a.samples:
            path = a.samples
            n = pq_rows(path)
            print(f"samples: {n:,} from {path}")
        else:
            path = work / f"gpu_samples-{len(files):03d}.parquet"
            todo = str(min(per_file, steps - first))
            wall, rss, out, _ = run(
                me(*fleet, "--worker", "generate", str(path), str(first), todo), log
            )
            n = int(out)
            size = path.stat().st_size
            print(f"generate: {n:,} samples, {size / 2**20:,.1f} MiB, {wall:.1f} s, {mib(rss)}")
        wall, rss, _, cpu = run(cli(*args, "gpu_sample", "--file", str(path)), log)
        print(
            f"backfill: {wall:.1f} s, {n / wall:,.0f} samples/s, {cpu / n * 1e6:.2f} CPU-us "
            f"per sample, peak RSS {mib(rss)}",
            flush=True,
        )
        rows, bf_wall, bf_cpu, bf_rss = rows + n, bf_wall + wall, bf_cpu + cpu, max(bf_rss, rss)
        files.append(path)
        if not keep_files and not a.samples:
            path.unlink()
        if a.samples:
            break
    if len(files) > 1:
        print(
            f"backfill, all {len(files)} files: {rows:,} samples in {bf_wall:.1f} s, "
            f"{rows / bf_wall:,.0f} samples/s, {bf_cpu / rows * 1e6:.2f} CPU-us per sample, "
            f"peak RSS {mib(bf_rss)}"
        )
    allocs = work / "allocations.jsonl"
    allocs.write_text("".join(json.dumps(r) + "\n" for r in allocations(a.gpus, a.days)))
    run(cli(*args, "allocation", "--file", str(allocs)), log)
    return (files if keep_files else []), rows


def rollup(lake: Path, log: Path, rows: int) -> None:
    """Step 3: build the rollups of every closed partition."""
    wall, rss, out, cpu = run(cli("lake", "rollup", "--lake", str(lake), "--format", "json"), log)
    built = json.loads(out)
    print(
        f"rollup: {wall:.1f} s, {rows / wall:,.0f} samples/s, {cpu / rows * 1e6:.2f} CPU-us "
        f"per sample, peak RSS {mib(rss)}, {built['partitions']} partitions -> "
        f"{built['bins']:,} bins"
    )


def audit(a: argparse.Namespace, lake: Path, work: Path, log: Path, ours: dict) -> float:
    """Import the voucher records, time the monthly audit (from the rollups), and check its
    attribution against the report (and, when compared, against every sample clipped);
    return the worst relative difference."""
    month = fleet_audit.audit_month(START, a.days)
    files = fleet_audit.voucher_files(work, allocations(a.gpus, a.days), month, TZ)
    run(cli("vouchers", "import", "--lake", str(lake), *files), log)
    cmd = ["audit", "--lake", str(lake), "--month", month, "--tz", TZ, "--format", "json"]
    wall, rss, out, cpu = run(cli(*cmd), log)
    got = json.loads(out)
    found = sorted({f["finding"] for f in got["findings"]})
    print(
        f"audit {month} from rollups: {wall:.2f} s, {cpu:.2f} CPU-s, peak RSS {mib(rss)}, "
        f"{len(got['findings'])} findings ({', '.join(found) or 'none'}), "
        f"{len(got['clean'])} clean claims"
    )
    fleet = fleet_args(a)
    _, _, out, _ = run(me(*fleet, "--worker", "attribution", str(lake), month, "bins"), log)
    bins = json.loads(out)
    worst, where = fleet_audit.worst_of(fleet_audit.against_report(bins, ours, month))
    print(f"audit metered vs report allocated GPU-h: worst relative {worst:.1e} ({where})")
    if worst > 1e-9:
        sys.exit("the audit's attribution and the report disagree")
    if not a.no_compare or a.raw_audit:
        raw_s, raw_rss, out, _ = run(
            me(*fleet, "--worker", "attribution", str(lake), month, "samples"), log
        )
        rel = fleet_audit.same_rows(bins, json.loads(out))
        print(
            f"attribution, raw path: {raw_s:.2f} s, peak RSS {mib(raw_rss)}; "
            f"vs rollups: worst relative {rel:.1e}"
        )
        if rel > 1e-9:
            sys.exit("the audit's attribution from rollups and from samples disagree")
        worst = max(worst, rel)
    return worst


def main() -> int:
    a = options()
    if a.worker:
        return worker(a)

    import duckdb
    import pyarrow
    from deltalake import __version__ as deltalake_version

    work = Path(tempfile.mkdtemp(prefix="gpuledger-fleet-"))
    lake = a.lake or work / "lake"
    log = work / "log"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {ram / 2**30:.1f} GiB RAM")
    print(
        f"versions: python {platform.python_version()}, pyarrow {pyarrow.__version__}, "
        f"duckdb {duckdb.__version__}, deltalake {deltalake_version}"
    )
    fleet = fleet_args(a)
    files: list[Path] = []
    raw: dict = {}
    if a.reuse_lake:
        print(f"reusing {lake} (already backfilled and rolled up)")
    else:
        files, rows = load(a, work, lake, log)
        if a.only == "backfill":
            return done(a, work)
        if a.only is None and not a.no_compare:
            raw_s, raw_rss, out, _ = run(me(*fleet, "--worker", "raw", str(lake)), log)
            raw = keyed(json.loads(out))
            print(f"report, raw path: {raw_s:.2f} s, peak RSS {mib(raw_rss)}")
        rollup(lake, log, rows)
        if a.only == "rollup":
            return done(a, work)
    report = ["report", "utilisation", "--lake", str(lake), "--period", "month"]
    ours_s, ours_rss, out, ours_cpu = run(cli(*report, "--by", "cluster", "--format", "json"), log)
    ours = keyed(json.loads(out))
    print(
        f"report from rollups: {ours_s:.2f} s, {ours_cpu:.2f} CPU-s, peak RSS {mib(ours_rss)}, "
        f"{len(ours)} rows"
    )
    worst = audit(a, lake, work, log, ours)
    if a.no_compare:
        for key in sorted(ours):
            print(f"  {' '.join(key)}: capacity {ours[key]['capacity_gpu_h']:,.3f} GPU-h")
        print("not compared (--no-compare): no raw-path report, no pandas")
        return done(a, work)
    allocs = work / "allocations.jsonl"
    pandas_s, pandas_rss, out, _ = run(
        me(*fleet, "--worker", "pandas", str(allocs), *map(str, files)), log
    )
    theirs = {tuple(k): v for *k, v in json.loads(out)}
    print(f"pandas: {pandas_s:.2f} s, peak RSS {mib(pandas_rss)}")
    print(
        f"ratio pandas/rollups: {pandas_s / ours_s:.2f}x, raw path/rollups: "
        f"{raw_s / ours_s:.2f}x (wall time of each process)"
    )
    worst = max(
        worst, compare("rollups vs pandas", ours, theirs), compare("rollups vs raw", ours, raw)
    )
    if a.compact:
        wall, _, _, _ = run(cli("lake", "compact", "--lake", str(lake), "--format", "json"), log)
        run(cli("lake", "rollup", "--lake", str(lake), "--format", "json"), log)
        again_s, again_rss, out, _ = run(cli(*report, "--by", "cluster", "--format", "json"), log)
        again = keyed(json.loads(out))
        same = all(again[k][f] == ours[k][f] for k in ours for f in FIGURES)
        print(
            f"compacted in {wall:.1f} s; report {again_s:.2f} s, peak RSS {mib(again_rss)}, "
            f"figures {'identical' if same else 'DIFFERENT'} to before"
        )
        worst = max(worst, compare("compacted vs not", again, ours))
    for key in sorted(ours):
        r = ours[key]
        print(
            f"  {' '.join(key)}: capacity {r['capacity_gpu_h']:,.3f} GPU-h, "
            f"busy {r['busy_gpu_h']:,.3f}, allocated {r['allocated_gpu_h']:,.3f}, "
            f"busy allocated {r['busy_allocated_gpu_h']:,.3f}"
        )
    print(f"agree: {len(ours)} rows x {len(FIGURES)} figures x 3 paths, worst relative {worst:.1e}")
    return done(a, work)


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def done(a: argparse.Namespace, work: Path) -> int:
    if a.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
