"""Ingest throughput, measured side by side in one run (not a test).

For each wire format (JSON v1, Arrow IPC v2: docs/wire.md) and for 1 and for 64 records per
message, on one topic (``gpu.samples.v1`` of a fresh namespace): publish N records, then time
(a) a bare kafka-python consume loop over all messages and (b) ``gpuledger ingest`` (decode,
validate, dedup, Parquet, commit) until all N are landed. Prints landed records/s of ingest
divided by records/s of the bare loop, timed from the launch of the ingest worker (joining the
group included) and from its first poll that brought records; then the machine, the versions
and the peak RSS.

    .venv/bin/python benchmarks/ingest.py --kafka 127.0.0.1:19292 [--records 200000]
        [--wires json,arrow] [--batches 1,64] [--repeat 3]

Each case publishes once and then times ``--repeat`` pairs (bare loop, then ingest in a fresh
consumer group and lake) over the same topic; it prints each pair and the medians, since the
bare loop alone varies by up to 2x between runs on a shared machine.

With ``--workers N``: scale-out instead. Publish the records once (64 per message) to a topic
of ``--partitions`` partitions, then run 1 and then N ``gpuledger ingest`` processes, each
time in a fresh consumer group and a fresh lake, over that same topic; print records/s landed
(launch to the commit that completed the lake, and first to last commit), the speed-up of N
over 1, CPU time and peak RSS per worker, and how busy the machine's cores were.

    .venv/bin/python benchmarks/ingest.py --kafka 127.0.0.1:19292 --workers 2 [--records 1000000]
        [--partitions 12] [--broker-pid P]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from collectors.publish import KafkaSink, PublishSettings  # noqa: E402
from pipeline.ingest import Ingestor, IngestSettings, IngestStats  # noqa: E402
from pipeline.records import GPU_SAMPLE  # noqa: E402
from pipeline.topics import ensure_topics, topic_for  # noqa: E402

T0 = 1_588_262_400_000
ROOT = Path(__file__).resolve().parents[1]


def publish(bootstrap: str, ns: str, n: int, batch: int, wire: str = "json") -> int:
    """Publish n samples of 256 GPUs; return the number of messages sent."""
    extra = {} if wire == "json" else {"wire": wire}
    sink = KafkaSink(
        PublishSettings(bootstrap=bootstrap, namespace=ns, batch_records=batch, **extra)
    )
    for i in range(n):
        sink.add(
            GPU_SAMPLE,
            {
                "ts": T0 + (i // 256) * 30_000,
                "interval_s": 30.0,
                "datacentre": "bench",
                "cluster": "c1",
                "node": f"n{(i % 256) // 8}",
                "gpu_uuid": f"GPU-{i % 256}",
                "gpu_index": i % 8,
                "gpu_model": "H100",
                "util": (i % 100) / 100,
                "mem_used_bytes": 1 << 33,
                "mem_total_bytes": 80 << 30,
                "power_w": 400.0,
                "temp_c": 60.0,
                "sm_active": None,
                "pod": None,
                "namespace": None,
                "job_id": None,
                "source": "bench",
            },
        )
    sink.flush()
    sink.close()
    return sink.sent_messages


def bare_consume(bootstrap: str, topic: str, messages: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    seen = 0
    started = time.perf_counter()
    while seen < messages:
        for batch in consumer.poll(timeout_ms=1000).values():
            seen += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def ours(bootstrap: str, ns: str, n: int, group: str) -> tuple[float, float]:
    """Seconds from the launch of an ingest worker, and from its first poll that brought
    records, to the flush that landed the n-th record."""
    stop = threading.Event()
    done: list[float] = []
    first: list[float] = []

    def progress(s: IngestStats) -> None:
        if s.landed >= n and not done:
            done.append(time.perf_counter())
            stop.set()

    with tempfile.TemporaryDirectory() as lake:
        ingestor = Ingestor(
            IngestSettings(
                bootstrap=bootstrap,
                lake=Path(lake),
                namespace=ns,
                group=group,
                max_batch_seconds=2.0,
            )
        )
        poll = ingestor.consumer.poll

        def timed_poll(*args: object, **kw: object) -> object:
            polled = poll(*args, **kw)  # type: ignore[arg-type]
            if polled and not first:
                first.append(time.perf_counter())
            return polled

        ingestor.consumer.poll = timed_poll  # type: ignore[method-assign]
        started = time.perf_counter()
        ingestor.run(stop=stop, progress=progress)
    if not done:
        raise RuntimeError("ingest stopped before landing every record")
    return done[0] - started, done[0] - first[0]


# -- scale-out: N worker processes in one group ----------------------------------------------
LIMITS = """\
What limits the speed-up on a small machine: CPU. Each worker is one Python process that
decodes, validates, deduplicates and writes Parquet mostly on one core; the broker (a JVM)
and everything else running share the same cores ('cores busy'). With 2 cores, 2 workers
can at best use both, so the speed-up stays below 2x, less whatever else runs; serving
pre-published batches costs the broker little (its CPU time above). More workers than cores
only add rebalances and Delta commit races (a worker that loses the race for a table version
writes its rows again: the version is stamped into them). Partitions are not the limit while
a topic has more of them than there are workers. Start-up (Python imports, joining the
group) is in launch-to-landed, not in first-to-last-commit."""


@dataclass
class Run:
    workers: int
    wall_s: float
    """Launch of the first worker to the commit that completed the lake."""
    steady_s: float
    """First to last commit of rows."""
    steady_records: int
    """Records landed after the first commit."""
    commits: int
    cpu_s: list[float]
    rss: list[int]
    machine_busy: float | None
    """Share of all cores busy (any process) from launch to the last commit."""
    broker_cpu_s: float | None


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _proc_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Samples machine CPU and the broker's CPU every 0.25 s."""

    def __init__(self, broker_pid: int | None) -> None:
        super().__init__(daemon=True)
        self.broker_pid = broker_pid
        self.samples: list[tuple[float, float, float, float | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), *_cpu_times(), _proc_cpu_s(self.broker_pid)))
            if self.stop.wait(0.25):
                return

    def between(self, t0: float, t1: float) -> tuple[float | None, float | None]:
        """(share of all cores busy, broker CPU seconds) from t0 to t1."""
        inside = [s for s in self.samples if t0 - 0.3 <= s[0] <= t1 + 0.3]
        if len(inside) < 2:
            return None, None
        (_, b0, n0, k0), (_, b1, n1, k1) = inside[0], inside[-1]
        busy = (b1 - b0) / (n1 - n0) if n1 > n0 else None
        return busy, None if k0 is None or k1 is None else k1 - k0


def run_workers(a: argparse.Namespace, ns: str, workers: int, sampler: Sampler) -> Run:
    from deltalake import DeltaTable

    with tempfile.TemporaryDirectory(prefix="gpuledger-ingest-bench-") as tmp:
        lake = Path(tmp) / "lake"
        group = f"{ns}-{workers}w-{uuid.uuid4().hex[:6]}"
        argv = [
            sys.executable, "-m", "gpuledger.cli", "ingest", "--kafka", a.kafka,
            "--lake", str(lake), "--namespace", ns, "--group", group,
            "--partitions", str(a.partitions), "--until-idle", "3", "--compact-every", "0",
            "--max-batch-seconds", "2", "--max-batch-records", str(a.max_batch_records),
        ]  # fmt: skip
        logs = [open(Path(tmp) / f"worker{i}.log", "wb") for i in range(workers)]  # noqa: SIM115
        started = time.time()
        procs = [
            subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) for log in logs
        ]
        cpu, rss = [], []
        for i, p in enumerate(procs):
            _pid, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            logs[i].close()
            if p.returncode != 0:
                tail = (Path(tmp) / f"worker{i}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {i} exited {p.returncode}:\n{tail}")
            cpu.append(usage.ru_utime + usage.ru_stime)
            rss.append(usage.ru_maxrss * 1024)
        commits = [
            (c["timestamp"] / 1000, int(c["gpuledger.rows"]))
            for c in DeltaTable(str(lake / "gpu_samples")).history()
            if "gpuledger.rows" in c
        ]
    commits.sort()
    landed = sum(rows for _, rows in commits)
    if landed != a.records:
        raise RuntimeError(f"{workers} worker(s) landed {landed:,} records, not {a.records:,}")
    first, last = commits[0][0], commits[-1][0]
    busy, broker = sampler.between(started, last)
    return Run(
        workers, last - started, last - first, landed - commits[0][1], len(commits), cpu, rss,
        busy, broker,
    )  # fmt: skip


def machine(a: argparse.Namespace) -> None:
    """Print the machine and the versions."""
    import deltalake
    import kafka
    import pyarrow

    pom = (ROOT / "gpuledger/deploy/kafka/pom.xml").read_text()
    recipe = re.search(r"<kafka.version>([^<]+)<", pom)
    cores = len(os.sched_getaffinity(0))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({cores} usable), "
        f"{ram / 2**30:.1f} GiB RAM, load average {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"versions: python {platform.python_version()}, pyarrow {pyarrow.__version__}, "
        f"deltalake {deltalake.__version__}, kafka-python {kafka.__version__}; broker "
        f"{a.kafka} (local recipe: Kafka {recipe.group(1) if recipe else '?'})"
    )


def side_by_side(a: argparse.Namespace) -> None:
    """Bare consume loop against ingest, per wire format and records per message; each pair
    ``--repeat`` times over the same published topic (ingest in a fresh group and lake each
    time), then the medians."""
    machine(a)
    print(
        f"{'wire':>5} {'records/msg':>11} {'records':>9} {'run':>6} {'bare rec/s':>11} "
        f"{'ingest rec/s':>12} {'ratio':>6} {'from 1st poll':>13} {'ratio':>6}"
    )
    for wire in a.wires.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            ns = f"bench{uuid.uuid4().hex[:8]}"
            ensure_topics(a.kafka, ns)
            messages = publish(a.kafka, ns, a.records, batch, wire)
            topic = topic_for(GPU_SAMPLE, ns)
            runs = []
            for r in range(a.repeat):
                bare = a.records / bare_consume(a.kafka, topic, messages)
                launch, polled = ours(a.kafka, ns, a.records, f"{ns}-bench{r}")
                runs.append((bare, a.records / launch, a.records / polled))
                if a.repeat > 1:
                    print(f"{wire:>5} {batch:>11} {a.records:>9,} {r + 1:>6} " + _cells(*runs[-1]))
            medians = [statistics.median(x) for x in zip(*runs, strict=True)]
            ratios = [statistics.median(x[i] / x[0] for x in runs) for i in (1, 2)]
            label = "median" if a.repeat > 1 else ""
            print(f"{wire:>5} {batch:>11} {a.records:>9,} {label:>6} " + _cells(*medians, *ratios))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (publisher, bare loop and ingest): {rss:,.0f} MiB")
    if a.repeat > 1:
        print("median: of each column over the runs; a median ratio is of the runs' ratios")


def _cells(bare: float, landed: float, steady: float, *ratios: float) -> str:
    """A row's figures; the ratios are ``landed / bare`` and ``steady / bare`` unless given."""
    launch, polled = ratios or (landed / bare, steady / bare)
    return f"{bare:>11,.0f} {landed:>12,.0f} {launch:>6.3f} {steady:>13,.0f} {polled:>6.3f}"


def scale_out(a: argparse.Namespace) -> None:
    machine(a)
    ns = f"bench{uuid.uuid4().hex[:8]}"
    ensure_topics(a.kafka, ns, partitions=a.partitions)
    t = time.perf_counter()
    messages = publish(a.kafka, ns, a.records, 64)
    print(
        f"published {a.records:,} records (256 GPUs, 64 per message: {messages:,} messages) to "
        f"{a.partitions} partitions in {time.perf_counter() - t:.1f} s"
    )
    print(
        f"workers: gpuledger ingest --max-batch-records {a.max_batch_records:,} "
        "--max-batch-seconds 2 --until-idle 3; 'cores busy' counts every process on the machine"
    )
    sampler = Sampler(a.broker_pid)
    sampler.start()
    runs = [run_workers(a, ns, n, sampler) for n in sorted({1, a.workers})]
    sampler.stop.set()
    print(
        f"{'workers':>7} {'landed rec/s':>12} {'launch->landed':>14} {'steady rec/s':>12} "
        f"{'commits':>7} {'worker CPU s':>13} {'peak RSS/worker':>15} {'cores busy':>10} "
        f"{'broker CPU s':>12}"
    )
    for r in runs:
        busy = "?" if r.machine_busy is None else f"{r.machine_busy:.0%}"
        broker = "?" if r.broker_cpu_s is None else f"{r.broker_cpu_s:.1f}"
        print(
            f"{r.workers:>7} {a.records / r.wall_s:>12,.0f} {r.wall_s:>13.1f}s "
            f"{r.steady_records / max(r.steady_s, 1e-9):>12,.0f} {r.commits:>7} "
            f"{'+'.join(f'{c:.1f}' for c in r.cpu_s):>13} "
            f"{max(r.rss) / 2**20:>11,.0f} MiB {busy:>10} {broker:>12}"
        )
    if len(runs) == 2:
        one, many = runs
        steady = (many.steady_records / many.steady_s) / (one.steady_records / one.steady_s)
        print(
            f"speed-up of {many.workers} workers over 1: {one.wall_s / many.wall_s:.2f}x "
            f"(launch to landed), {steady:.2f}x (first to last commit)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (publisher): {rss:,.0f} MiB")
    print(LIMITS)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kafka", required=True)
    ap.add_argument(
        "--records", type=int, help="records to publish (default 200,000; --workers 1,000,000)"
    )
    ap.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="scale-out: run 1, then N ingest processes in one group over the same topic",
    )
    ap.add_argument("--partitions", type=int, default=12, help="scale-out topic partitions")
    ap.add_argument(
        "--max-batch-records", type=int, default=20_000, help="scale-out: per worker flush size"
    )
    ap.add_argument(
        "--broker-pid", type=int, help="scale-out: also report the broker process's CPU time"
    )
    ap.add_argument("--wires", default="json,arrow", help="wire formats to run (json, arrow)")
    ap.add_argument("--batches", default="1,64", help="records per message to run")
    ap.add_argument(
        "--repeat", type=int, default=3, help="bare loop and ingest pairs per case (default 3)"
    )
    a = ap.parse_args()
    if a.records is None:  # scale-out: enough that start-up and joining do not dominate
        a.records = 1_000_000 if a.workers else 200_000
    if a.workers:
        scale_out(a)
    else:
        side_by_side(a)


if __name__ == "__main__":
    main()
