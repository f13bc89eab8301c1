"""Generate the demo's DCGM-format sample stream (synthetic; see gpuledger/data/dcgm/README.md).

Two 8-GPU V100 nodes, one scrape every 300 s, as dcgm-exporter exposition text with a timestamp
on every sample line (the shape of a Prometheus ``/federate`` dump). GPU utilisation is drawn by
inverse-CDF sampling from the ACME Seren ``DCGM_FI_DEV_GPU_UTIL`` quantile function (Hu et al.,
NSDI '24, CC BY 4.0) through a Gaussian copula with persistence, so every GPU's marginal
distribution is the published one while levels last like jobs do. Deterministic for a seed.

    python deploy/demo/make_dcgm_stream.py                      # the committed file
    python deploy/demo/make_dcgm_stream.py --start 2020-05-01T00:00:00+08:00 --hours 1 --out x.prom
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "gpuledger" / "data" / "dcgm"
QUANTILES = DATA / "acme-seren-gpu-quantiles.csv"
OUT = DATA / "earth-sim-2020-05.prom.gz"

START = "2020-05-01T00:00:00+08:00"  # May 2020 in Asia/Shanghai = 2020-04-30T16:00Z ..
END = "2020-06-01T00:00:00+08:00"  # .. 2020-05-31T16:00Z (exclusive)
STEP_S = 300
SEED = 20200501

NODES = ("earth-sim-gpu01", "earth-sim-gpu02")
MODEL = "NVIDIA V100-SXM2-32GB"
FB_TOTAL_MIB = 32510  # what a V100-SXM2-32GB reports as FB_USED + FB_FREE
PCI_BUS = ("06", "07", "0A", "0B", "85", "86", "89", "8A")  # DGX-1-style 8 x SXM2 layout
BLANK = 9223372036854775794  # DCGM_INT64_NOT_SUPPORTED (blank + 2), as in the exporter README

# Family order and HELP text as in dcgm-exporter's etc/default-counters.csv (Apache-2.0).
FAMILIES = (
    ("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active."),
)

# Persistence model (Gaussian copula): latent z = sqrt(JOB_SHARE)*z_job + sqrt(1-JOB_SHARE)*w,
# z_job ~ N(0,1) held for a job, w a stationary AR(1) per GPU; util = Q(Phi(z)). z is N(0,1) at
# every step, so each GPU's utilisation marginal is exactly the published quantile function.
JOB_SHARE = 0.85
AR_PHI = 0.9  # per 300 s step
JOB_MEDIAN_H, JOB_SIGMA = 3.0, 1.0  # log-normal job length
WHOLE_NODE_JOB = 0.6  # probability that a job takes all 8 GPUs of a node
MEM_RHO = 0.8  # copula correlation of a job's memory level with its utilisation level


class Quantile:
    """A published quantile function ``value(p)``, p in [0, 1], linearly interpolated."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        points.sort()
        self.p = [p / 100.0 for p, _ in points]
        self.v = [v for _, v in points]

    def __call__(self, p: float) -> float:
        i = bisect.bisect_right(self.p, p)
        if i <= 0:
            return self.v[0]
        if i >= len(self.p):
            return self.v[-1]
        p0, p1, v0, v1 = self.p[i - 1], self.p[i], self.v[i - 1], self.v[i]
        return v0 if p1 == p0 else v0 + (v1 - v0) * (p - p0) / (p1 - p0)


def load_quantiles(path: Path, metric: str, cluster: str = "seren") -> Quantile:
    with path.open(newline="") as f:
        rows = [
            (float(r["cdf_percent"]), float(r["value"]))
            for r in csv.DictReader(f)
            if r["cluster"] == cluster and r["metric"] == metric
        ]
    if not rows:
        raise SystemExit(f"{path}: no rows for cluster={cluster} metric={metric}")
    return Quantile(rows)


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass
class Job:
    steps_left: int
    z: float
    mem_p: float
    gr_factor: float


@dataclass
class Gpu:
    node: str
    index: int
    uuid: str
    pci_bus_id: str
    idle_w: float
    temp_offset: float
    w: float
    temp: float
    job: Job | None = None

    def labels(self) -> str:
        return (
            f'gpu="{self.index}",UUID="{self.uuid}",pci_bus_id="{self.pci_bus_id}",'
            f'device="nvidia{self.index}",modelName="{MODEL}",Hostname="{self.node}"'
        )


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _new_job(rng: random.Random) -> Job:
    steps = max(1, round(JOB_MEDIAN_H * 3600 / STEP_S * math.exp(rng.gauss(0.0, JOB_SIGMA))))
    z = rng.gauss(0.0, 1.0)
    mem_z = MEM_RHO * z + math.sqrt(1 - MEM_RHO**2) * rng.gauss(0.0, 1.0)
    return Job(steps, z, phi(mem_z), rng.uniform(0.82, 0.98))


def make_gpus(rng: random.Random) -> list[Gpu]:
    return [
        Gpu(
            node=node,
            index=i,
            uuid=_uuid(rng),
            pci_bus_id=f"00000000:{PCI_BUS[i]}:00.0",
            idle_w=rng.uniform(38.5, 44.0),
            temp_offset=rng.uniform(0.0, 4.0),
            w=rng.gauss(0.0, 1.0),
            temp=33.0,
        )
        for node in NODES
        for i in range(8)
    ]


def _assign_jobs(rng: random.Random, gpus: list[Gpu]) -> None:
    """Start new jobs where one ended: a whole-node job when all 8 GPUs of a node are free."""
    for node in NODES:
        mine = [g for g in gpus if g.node == node]
        free = [g for g in mine if g.job is None or g.job.steps_left <= 0]
        if len(free) == len(mine) and rng.random() < WHOLE_NODE_JOB:
            job = _new_job(rng)
            for g in mine:
                g.job = job
            continue
        for g in free:
            g.job = _new_job(rng)


def scrapes(
    start: datetime, end: datetime, seed: int, util_q: Quantile, mem_q: Quantile
) -> Iterator[str]:
    """One exposition block per scrape instant, both nodes' series under each family."""
    rng = random.Random(seed)
    gpus = make_gpus(rng)
    noise = math.sqrt(1 - AR_PHI**2)
    t = start
    while t < end:
        ts_ms = int(t.timestamp() * 1000)
        _assign_jobs(rng, gpus)
        values: dict[str, list[str]] = {name: [] for name, _ in FAMILIES}
        seen: set[int] = set()
        for g in gpus:
            job = g.job
            assert job is not None
            if id(job) not in seen:  # a job shared by 8 GPUs ages once per step
                seen.add(id(job))
                job.steps_left -= 1
            g.w = AR_PHI * g.w + noise * rng.gauss(0.0, 1.0)
            z = math.sqrt(JOB_SHARE) * job.z + math.sqrt(1 - JOB_SHARE) * g.w
            util = int(round(util_q(phi(z))))
            gr = 0.0 if util == 0 else min(1.0, max(0.0, util / 100 * job.gr_factor))
            gr = round(gr + (rng.gauss(0.0, 0.004) if util else 0.0), 4)
            fb_used = int(round(mem_q(job.mem_p) / 100.0 * FB_TOTAL_MIB))
            power = g.idle_w + util / 100 * (140.0 + 120.0 * job.gr_factor) + rng.gauss(0.0, 2.5)
            power = min(300.0, max(g.idle_w - 2.0, power))
            target = 31.0 + g.temp_offset + 0.16 * (power - g.idle_w)
            g.temp += 0.6 * (target - g.temp) + rng.gauss(0.0, 0.4)
            row = {
                "DCGM_FI_DEV_MEMORY_TEMP": str(BLANK),
                "DCGM_FI_DEV_GPU_TEMP": str(int(round(g.temp))),
                "DCGM_FI_DEV_POWER_USAGE": f"{round(power, 3):f}",
                "DCGM_FI_DEV_GPU_UTIL": str(util),
                "DCGM_FI_DEV_FB_FREE": str(FB_TOTAL_MIB - fb_used),
                "DCGM_FI_DEV_FB_USED": str(fb_used),
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE": f"{max(0.0, min(1.0, gr)):f}",
            }
            labels = g.labels()
            for name, value in row.items():
                values[name].append(f"{name}{{{labels}}} {value} {ts_ms}\n")
        out = io.StringIO()
        for name, help_text in FAMILIES:
            out.write(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            out.writelines(values[name])
        yield out.getvalue()
        t += timedelta(seconds=STEP_S)


def write(path: Path, blocks: Iterator[str]) -> int:
    """Write the stream (gzip when ``path`` ends in .gz, byte-reproducible); return scrapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
                for block in blocks:
                    gz.write(block.encode())
                    n += 1
        else:
            for block in blocks:
                raw.write(block.encode())
                n += 1
    tmp.replace(path)
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--start", default=START, help="ISO-8601 with offset")
    ap.add_argument("--end", default=END, help="ISO-8601 with offset (exclusive)")
    ap.add_argument("--hours", type=float, help="instead of --end: this many hours after --start")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--quantiles", type=Path, default=QUANTILES)
    args = ap.parse_args(argv)
    start = datetime.fromisoformat(args.start)
    end = start + timedelta(hours=args.hours) if args.hours else datetime.fromisoformat(args.end)
    util_q = load_quantiles(args.quantiles, "DCGM_FI_DEV_GPU_UTIL")
    mem_q = load_quantiles(args.quantiles, "DCGM_FI_DEV_FB_USED_pct_of_80GiB")
    n = write(args.out, scrapes(start, end, args.seed, util_q, mem_q))
    print(f"{args.out}: {n} scrapes x {len(NODES) * 8} GPUs, {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
