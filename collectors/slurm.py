"""Slurm ``sacct`` -> ``allocation`` records (field formats: ``collectors.slurm_fields``).

``SacctCollector`` runs, with ``TZ=UTC``, the invocation Open XDMoD requires::

    sacct --allusers --parsable2 --noheader --allocations --duplicates \
        --format jobid,jobidraw,...,alloctres,timelimit,nodelist,jobname \
        --starttime S --endtime E [--clusters C]

or reads such output saved in a file (``sacct_file``). Quirks of the real format handled here:

- ``jobname`` is last and may contain ``|``: a line is split into at most 26 fields;
- job arrays: ``123_4`` is one task; ``123_[1-3,7]`` (pending tasks printed compressed) becomes
  one allocation per index, as XDMoD's shredder expands them;
- ``NodeList`` is a hostlist expression (``d13n[03,05,07-08]``, see ``collectors.hostlist``);
- ``Unknown`` / ``None`` times (running or pending jobs) are NULL; a job in a non-ended state has
  no end even if sacct prints one;
- ``State`` may carry a suffix (``CANCELLED by 102216``): the record keeps the state word;
- GPUs come from ``AllocTRES`` (``ReqTRES`` for a job that never got resources): the untyped
  ``gres/gpu=N`` if present, else the sum of the typed ``gres/gpu:<type>=N``, never both
  (``gres/gpumem``/``gres/gpuutil`` are not GPUs);
- ``--duplicates`` prints earlier runs of a requeued job under the same id: every run but the
  last of a pass, and every ``REQUEUED`` run, gets ``<jobid>@<start epoch s>`` as allocation id
  so that each run keeps its own GPU-hours (a row repeating the last run's start is that run).
  Across passes only ``REQUEUED`` rows are recognised: an earlier run printed with another
  state in an earlier window is replaced by the later run (latest event wins downstream).

Tenant = account. ``event_ts`` = the latest instant the row knows (end, else start, else
eligible, else submit), so re-reading the same state of a job gives the same record (deduplicated
downstream) and a later state always has a later ``event_ts``.

Incremental: with a ``state_file``, each pass reads ``[last end - overlap, now]`` and writes the
new end to the file after the pass's records were handed on (see ``SacctCollector.collect``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from collectors import command
from collectors.base import Emitted
from collectors.command import Runner
from collectors.errors import SourceError
from collectors.hostlist import HostlistError, expand
from collectors.slurm_fields import (
    SacctLineError,
    array_tasks,
    parse_duration,
    parse_time,
    tres_gpu_count,
)
from pipeline.atomic import write_atomic
from pipeline.records import ALLOCATION, Record

log = logging.getLogger(__name__)

SOURCE = "slurm"
SACCT_FIELDS = (
    "jobid", "jobidraw", "cluster", "partition", "qos", "account", "group", "gid", "user", "uid",
    "submit", "eligible", "start", "end", "elapsed", "exitcode", "state", "nnodes", "ncpus",
    "reqcpus", "reqmem", "reqtres", "alloctres", "timelimit", "nodelist", "jobname",
)  # fmt: skip
"""Open XDMoD's field list (docs/resource-manager-slurm.md), jobname last."""

ENDED_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
     "PREEMPTED", "REQUEUED", "REVOKED", "TIMEOUT"}
)  # fmt: skip
"""States after which the allocation is over (XDMoD's ended states, plus REQUEUED for the
earlier runs that ``--duplicates`` prints)."""
ACTIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "SUSPENDED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "COMPLETING",
     "CONFIGURING", "STAGE_OUT", "SIGNALING", "SPECIAL_EXIT", "STOPPED", "RESV_DEL_HOLD"}
)  # fmt: skip
"""States of a job that is not over: no end time."""

DEFAULT_LOOKBACK = timedelta(days=1)
DEFAULT_OVERLAP = timedelta(minutes=10)
SACCT_TIMEOUT_S = 300.0


# ------------------------------------------------------------------------------ one line


@dataclass(frozen=True)
class SacctJob:
    """One sacct line, typed (times in epoch ms, durations in seconds)."""

    fields: Mapping[str, str]
    job_ids: tuple[str, ...]
    """The job's ids: one, or one per array index of a compressed array line."""
    state: str
    """State word without suffix: ``CANCELLED by 102216`` -> ``CANCELLED``."""
    submit: int | None
    eligible: int | None
    start: int | None
    end: int | None
    elapsed_s: int | None
    timelimit_s: int | None
    gpus: int
    nodes: tuple[str, ...]

    def __getitem__(self, name: str) -> str:
        return self.fields[name]


def parse_line(line: str, tz: tzinfo = UTC) -> SacctJob:
    """One ``--parsable2`` line in ``SACCT_FIELDS`` order; raises ``SacctLineError``."""
    values = line.rstrip("\r\n").split("|", len(SACCT_FIELDS) - 1)
    if len(values) != len(SACCT_FIELDS):
        raise SacctLineError(
            "bad_field_count", f"{len(values)} fields, expected {len(SACCT_FIELDS)}"
        )
    f = dict(zip(SACCT_FIELDS, values, strict=True))
    state_text = f["state"].strip()
    state = state_text.split(" ", 1)[0].upper() if state_text else ""
    if state not in ENDED_STATES and state not in ACTIVE_STATES:
        raise SacctLineError("unknown_state", repr(state_text))
    start = parse_time(f["start"], tz)
    end = parse_time(f["end"], tz) if state in ENDED_STATES else None
    tres = f["alloctres"] if f["alloctres"].strip() else f["reqtres"]
    try:
        nodes = tuple(expand(f["nodelist"]))
    except HostlistError as exc:
        raise SacctLineError("bad_nodelist", str(exc)) from None
    if start is not None and end is not None and end < start:
        raise SacctLineError("end_before_start", f"{f['start']} > {f['end']}")
    return SacctJob(
        fields=f,
        job_ids=tuple(array_tasks(f["jobid"].strip())),
        state=state,
        submit=parse_time(f["submit"], tz),
        eligible=parse_time(f["eligible"], tz),
        start=start,
        end=end,
        elapsed_s=parse_duration(f["elapsed"]),
        timelimit_s=parse_duration(f["timelimit"]),
        gpus=tres_gpu_count(tres),
        nodes=nodes,
    )


@dataclass
class ParseResult:
    jobs: list[SacctJob]
    skipped: dict[str, int]
    lines: int


def parse_sacct(text: str, tz: tzinfo = UTC) -> ParseResult:
    """Every line of sacct output; bad lines are skipped and counted by reason (and logged)."""
    jobs: list[SacctJob] = []
    skipped: Counter[str] = Counter()
    lines = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        lines += 1
        try:
            jobs.append(parse_line(line, tz))
        except SacctLineError as exc:
            skipped[exc.reason] += 1
            log.warning("sacct line %d skipped (%s): %.120s", number, exc, line)
    return ParseResult(jobs, dict(skipped), lines)


def allocations(
    jobs: Sequence[SacctJob], *, datacentre: str, cluster: str | None
) -> Iterator[Record]:
    """Allocation records for parsed jobs (one per job id; see the module docstring)."""
    runs: Counter[str] = Counter()
    last_start: dict[str, int | None] = {}
    for job in jobs:
        runs.update(job.job_ids)
        last_start.update(dict.fromkeys(job.job_ids, job.start))
    seen: Counter[str] = Counter()
    for job in jobs:
        tenant = job["account"].strip() or job["user"].strip() or "unknown"
        event = job.end or job.start or job.eligible or job.submit
        if event is None:
            continue  # unreachable for real sacct output: submit is always set
        for job_id in job.job_ids:
            seen[job_id] += 1
            earlier_run = (seen[job_id] < runs[job_id] or job.state == "REQUEUED") and (
                job.start != last_start[job_id]  # the same run printed twice stays one
            )
            allocation_id = (
                f"{job_id}@{job.start // 1000}" if earlier_run and job.start is not None else job_id
            )
            expanded = len(job.job_ids) > 1 or job_id != job["jobid"].strip()
            yield {
                "allocation_id": allocation_id,
                "datacentre": datacentre,
                "cluster": cluster or job["cluster"].strip() or "default",
                "tenant_id": tenant,
                "event_ts": event,
                "job_id": job_id if expanded else (job["jobidraw"].strip() or job_id),
                "gpu_count": float(job.gpus),
                "gpu_uuids": None,
                "nodes": list(job.nodes) or None,
                "start": job.start,
                "end": job.end,
                "state": job.state,
                "source": SOURCE,
            }


# ------------------------------------------------------------------------------ running sacct


def run_command(argv: Sequence[str], timeout_s: float = SACCT_TIMEOUT_S) -> str:
    """Run a Slurm client command with ``TZ=UTC`` and ISO times; failures raise ``SourceError``.

    ``SLURM_TIME_FORMAT=standard`` overrides a site default such as ``relative``, which would
    print times the parser cannot read.
    """
    env = {**os.environ, "TZ": "UTC", "SLURM_TIME_FORMAT": "standard"}
    return command.run_command(argv, timeout_s=timeout_s, env=env)


def sacct_command(start: datetime, end: datetime, clusters: str | None = None) -> list[str]:
    """The sacct invocation (times given in UTC; the runner sets ``TZ=UTC``)."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    argv = ["sacct", "--allusers", "--parsable2", "--noheader", "--allocations", "--duplicates"]
    if clusters:
        argv += ["--clusters", clusters]
    argv += ["--format", ",".join(SACCT_FIELDS)]
    argv += ["--starttime", start.astimezone(UTC).strftime(fmt)]
    argv += ["--endtime", end.astimezone(UTC).strftime(fmt)]
    return argv


def read_window_state(path: Path) -> datetime | None:
    """The end of the last window read, from the state file (None if there is none yet)."""
    try:
        data = json.loads(path.read_text())
        return datetime.fromisoformat(data["window_end"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{path}: unreadable sacct window state ({exc})") from exc


def write_window_state(path: Path, window_end: datetime) -> None:
    """Write the state file atomically (``pipeline.atomic``)."""
    write_atomic(path, json.dumps({"window_end": window_end.astimezone(UTC).isoformat()}) + "\n")


class SacctCollector:
    """One ``collect()`` = one sacct window (or the whole saved file)."""

    def __init__(
        self,
        *,
        datacentre: str,
        cluster: str | None = None,
        sacct_file: Path | None = None,
        file_tz: str = "UTC",
        state_file: Path | None = None,
        clusters: str | None = None,
        lookback: timedelta = DEFAULT_LOOKBACK,
        overlap: timedelta = DEFAULT_OVERLAP,
        run: Runner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.datacentre = datacentre
        self.cluster = cluster
        self.sacct_file = sacct_file
        self.file_tz = ZoneInfo(file_tz)
        self.state_file = state_file
        self.clusters = clusters
        self.lookback = lookback
        self.overlap = overlap
        self._run = run or run_command
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self.last_window: tuple[datetime, datetime] | None = None

    def _read(self) -> tuple[str, str, datetime | None]:
        """(text, where it came from, window end to remember or None)."""
        if self.sacct_file is not None:
            try:
                return self.sacct_file.read_text(encoding="utf-8"), str(self.sacct_file), None
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.sacct_file}: {type(exc).__name__}: {exc}") from exc
        now = datetime.fromtimestamp(self._clock(), tz=UTC).replace(microsecond=0)
        last = read_window_state(self.state_file) if self.state_file else None
        start = (last - self.overlap) if last is not None else now - self.lookback
        if self.last_window is not None and self.state_file is None:
            start = self.last_window[1] - self.overlap
        argv = sacct_command(start, now, self.clusters)
        self.last_window = (start, now)
        try:
            text = self._run(argv)
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"sacct: {type(exc).__name__}: {exc}") from exc
        return text, f"sacct {start.isoformat()}..{now.isoformat()}", now

    def collect(self) -> Iterator[Emitted]:
        """Yield the window's allocations; then remember the window (state file).

        The state is written only once every record was taken by the caller, so a pass that
        fails half-way is read again; re-read records are identical and deduplicated.
        """
        text, where, window_end = self._read()
        tz = self.file_tz if self.sacct_file is not None else UTC
        result = parse_sacct(text, tz)
        if result.lines and result.skipped.get("bad_field_count", 0) == result.lines:
            raise SourceError(
                f"{where}: no line is sacct --parsable2 output in the expected field order "
                f"({result.lines} line(s): {dict(result.skipped)})"
            )
        self.skipped.update(result.skipped)
        for record in allocations(result.jobs, datacentre=self.datacentre, cluster=self.cluster):
            yield ALLOCATION, record
        if window_end is not None and self.state_file is not None:
            write_window_state(self.state_file, window_end)
