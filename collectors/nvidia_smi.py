"""``nvidia-smi --query-gpu`` CSV -> ``gpu_sample`` records.

Live: ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`` once per pass.
Saved: ``--file`` reads such output, also a ``-l N`` / ``--loop-ms`` log of many scrapes, with or
without the header line (a header names the columns, so any order of the known fields works)
and with or without units (``99 %``, ``30994 MiB``: the unit is dropped).

- ``[N/A]``, ``[Not Supported]``, ``[Unknown Error]``, ``N/A`` and any other bracketed
  placeholder are NULL, counted by field in ``nulled``;
- ``timestamp`` (``2020/11/12 13:48:11.412``) has no zone: it is the host's local time, given
  as ``tz`` (default UTC for files, the local zone for live runs) and normalised to UTC;
- ``utilization.gpu`` is percent: util = value / 100 (the third utilisation source of
  docs/semantics.md); ``memory.*`` are MiB.
"""

from __future__ import annotations

import csv
import io
import logging
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from collectors.base import Emitted
from collectors.command import Runner, run_command
from collectors.errors import SourceError
from pipeline.records import GPU_SAMPLE, Record

log = logging.getLogger(__name__)

SOURCE = "nvidia-smi"
QUERY_FIELDS = (
    "timestamp", "index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total",
    "power.draw", "temperature.gpu",
)  # fmt: skip
REQUIRED = ("timestamp", "uuid")
MIB = 2**20
COMMAND_TIMEOUT_S = 30.0
_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%a %b %d %H:%M:%S %Y")


def smi_command(fields: Sequence[str] = QUERY_FIELDS) -> list[str]:
    return ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def run_smi(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """Run nvidia-smi; a missing binary, a driver error or a timeout raises ``SourceError``."""
    return run_command(argv, timeout_s=timeout_s, hint=" (no NVIDIA driver?)")


def _is_placeholder(value: str) -> bool:
    return value == "" or value == "N/A" or (value.startswith("[") and value.endswith("]"))


def _number(value: str) -> float:
    """``99``, ``99 %``, ``30994 MiB``, ``250.12 W`` -> the number (units dropped)."""
    return float(value.split()[0])


def parse_timestamp(text: str, tz: tzinfo) -> int:
    for fmt in _TIME_FORMATS:
        try:
            value = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(round(value.replace(tzinfo=tz).timestamp() * 1000))
    raise ValueError(f"timestamp {text!r} is not nvidia-smi's format")


@dataclass
class ParseResult:
    records: list[Record]
    skipped: dict[str, int]
    nulled: dict[str, int]
    rows: int


def _header(row: list[str]) -> list[str] | None:
    """Field names if ``row`` is a header (``utilization.gpu [%]`` -> ``utilization.gpu``)."""
    names = [c.strip().split(" [", 1)[0] for c in row]
    return names if "uuid" in names or "timestamp" in names else None


def parse_csv(
    text: str,
    *,
    datacentre: str,
    cluster: str,
    node: str,
    interval_s: float,
    tz: tzinfo,
    fields: Sequence[str] = QUERY_FIELDS,
) -> ParseResult:
    """nvidia-smi CSV -> one gpu_sample per row; bad rows are skipped and counted."""
    records: list[Record] = []
    skipped: Counter[str] = Counter()
    nulled: Counter[str] = Counter()
    columns = list(fields)
    rows = 0
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        header = _header(row)
        if header is not None:
            columns = header
            continue
        rows += 1
        if len(row) != len(columns):
            skipped["bad_column_count"] += 1
            continue
        values = {name: value.strip() for name, value in zip(columns, row, strict=True)}
        if any(_is_placeholder(values.get(name, "")) for name in REQUIRED):
            skipped["no_timestamp_or_uuid"] += 1
            continue
        try:
            record = _record(values, nulled, datacentre, cluster, node, interval_s, tz)
        except ValueError as exc:
            skipped["unparseable_value"] += 1
            log.debug("nvidia-smi row skipped: %s", exc)
            continue
        records.append(record)
    return ParseResult(records, dict(skipped), dict(nulled), rows)


def _record(
    v: dict[str, str],
    nulled: Counter[str],
    datacentre: str,
    cluster: str,
    node: str,
    interval_s: float,
    tz: tzinfo,
) -> Record:
    def num(name: str) -> float | None:
        value = v.get(name)
        if value is None:
            return None
        if _is_placeholder(value):
            nulled[name] += 1
            return None
        return _number(value)

    util, used, total = num("utilization.gpu"), num("memory.used"), num("memory.total")
    index, power, temp = num("index"), num("power.draw"), num("temperature.gpu")
    name = v.get("name")
    return {
        "ts": parse_timestamp(v["timestamp"], tz),
        "interval_s": float(interval_s),
        "datacentre": datacentre,
        "cluster": cluster,
        "node": node,
        "gpu_uuid": v["uuid"],
        "gpu_index": None if index is None else int(index),
        "gpu_model": None if name is None or _is_placeholder(name) else name,
        "util": None if util is None else util / 100.0,
        "mem_used_bytes": None if used is None else int(round(used * MIB)),
        "mem_total_bytes": None if total is None else int(round(total * MIB)),
        "power_w": power,
        "temp_c": temp,
        "sm_active": None,
        "pod": None,
        "namespace": None,
        "job_id": None,
        "source": SOURCE,
    }


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


class NvidiaSmiCollector:
    """One ``collect()`` = one nvidia-smi query (or the whole saved file)."""

    def __init__(
        self,
        *,
        datacentre: str,
        cluster: str,
        node: str | None = None,
        interval_s: float = 30.0,
        file: Path | None = None,
        tz: str | None = None,
        run: Runner | None = None,
    ) -> None:
        self.datacentre = datacentre
        self.cluster = cluster
        self.node = node or socket.gethostname()
        self.interval_s = interval_s
        self.file = file
        self.tz: tzinfo = ZoneInfo(tz) if tz else (ZoneInfo("UTC") if file else _local_zone())
        self._run = run or run_smi
        self.skipped: Counter[str] = Counter()
        self.nulled: Counter[str] = Counter()

    def _read(self) -> tuple[str, str]:
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8"), str(self.file)
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.file}: {type(exc).__name__}: {exc}") from exc
        try:
            return self._run(smi_command()), "nvidia-smi"
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"nvidia-smi: {type(exc).__name__}: {exc}") from exc

    def collect(self) -> Iterator[Emitted]:
        text, where = self._read()
        result = parse_csv(
            text,
            datacentre=self.datacentre,
            cluster=self.cluster,
            node=self.node,
            interval_s=self.interval_s,
            tz=self.tz,
        )
        if result.rows and not result.records:
            first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
            raise SourceError(
                f"{where}: no row is nvidia-smi --query-gpu CSV ({result.skipped}; "
                f"first line: {first!r})"
            )
        self.skipped.update(result.skipped)
        self.nulled.update(result.nulled)
        for record in result.records:
            yield GPU_SAMPLE, record
