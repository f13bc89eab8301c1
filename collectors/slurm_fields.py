"""The field formats Slurm's clients print: times, durations, TRES and GRES strings, job-array
ids. Shared by the ``sacct`` reader (:mod:`collectors.slurm`) and the ``scontrol`` node reader
(:mod:`collectors.slurm_nodes`); every unreadable field raises :class:`SacctLineError`."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from collectors.hostlist import HostlistError, expand, split_top_level
from pipeline.errors import TerminalError

_NULL_TIMES = frozenset({"", "Unknown", "None", "N/A"})


class SacctLineError(TerminalError, ValueError):
    """One sacct line that cannot be read; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_time(text: str, tz: tzinfo = UTC) -> int | None:
    """A sacct time (``YYYY-MM-DDTHH:MM:SS`` in the zone sacct ran in) as epoch ms, or None."""
    text = text.strip()
    if text in _NULL_TIMES:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SacctLineError("bad_time", repr(text)) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return int(value.timestamp() * 1000)


def parse_duration(text: str) -> int | None:
    """``[DD-[HH:]]MM:SS`` (Elapsed, Timelimit) as seconds; ``UNLIMITED`` and blanks -> None."""
    text = text.strip()
    if text in _NULL_TIMES or text in ("UNLIMITED", "Partition_Limit", "INVALID"):
        return None
    days, _, rest = text.rpartition("-")
    parts = rest.split(":")
    if not (days == "" or days.isdigit()) or not 1 <= len(parts) <= 3:
        raise SacctLineError("bad_duration", repr(text))
    try:
        numbers = [int(float(p)) for p in parts]
    except ValueError:
        raise SacctLineError("bad_duration", repr(text)) from None
    while len(numbers) < 3:
        numbers.insert(0, 0)
    hours, minutes, seconds = numbers
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def tres_gpu_count(tres: str) -> int:
    """GPUs in a TRES string (``billing=10,cpu=10,gres/gpu=4,mem=374000M,node=2`` -> 4).

    The untyped ``gres/gpu=N`` when present, else the sum of typed ``gres/gpu:<type>=N``: with
    ``AccountingStorageTRES=gres/gpu,gres/gpu:a100`` Slurm prints both for the same GPUs.
    """
    untyped: int | None = None
    typed = 0
    for item in tres.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq:
            continue
        if name == "gres/gpu" or name.startswith("gres/gpu:"):
            try:
                count = int(value)
            except ValueError:
                raise SacctLineError("bad_tres", repr(item)) from None
            if name == "gres/gpu":
                untyped = count
            else:
                typed += count
    return untyped if untyped is not None else typed


def gres_gpus(gres: str) -> list[tuple[str | None, int]]:
    """(type, count) of each GPU entry of a GRES string; comma-separated, ``(...)`` ignored.

    ``gpu:a100:4(S:0-1)`` -> [("a100", 4)]; ``gpu:2`` -> [(None, 2)]; ``gpu`` -> [(None, 1)];
    ``gpu:P100:2(IDX:1,3),hbm:0`` -> [("P100", 2)]; ``gpu:0(IDX:N/A)`` -> [(None, 0)].
    """
    out: list[tuple[str | None, int]] = []
    text = gres.strip()
    if text in ("", "(null)", "N/A"):
        return out
    for item in split_top_level(text, ",", "(", ")"):
        bare = item.split("(", 1)[0].strip()
        parts = bare.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 1:
            out.append((None, 1))
            continue
        last = parts[-1]
        if last.isdigit():
            out.append((":".join(parts[1:-1]) or None, int(last)))
        elif len(parts) == 2:  # gpu:<type> = one GPU of that type
            out.append((parts[1], 1))
        else:
            raise SacctLineError("bad_gres", repr(item))
    return out


def gres_gpu_count(gres: str) -> int:
    """Total GPUs in a GRES string (``Gres``, ``GresUsed``, the old ``ReqGRES``)."""
    return sum(count for _, count in gres_gpus(gres))


def array_tasks(jobid: str) -> list[str]:
    """``123_[1-3,7]`` -> ``123_1 123_2 123_3 123_7``; ``123_4`` and ``123`` as they are.

    A ``%N`` throttle suffix (``123_[1-100%10]``) is dropped.
    """
    base, sep, rest = jobid.partition("_")
    if not sep or not rest.startswith("["):
        return [jobid]
    if not rest.endswith("]"):
        raise SacctLineError("bad_jobid", repr(jobid))
    spec = rest[1:-1].split("%", 1)[0]
    try:
        return [f"{base}_{index}" for index in expand(f"[{spec}]")]
    except HostlistError:
        raise SacctLineError("bad_jobid", repr(jobid)) from None
