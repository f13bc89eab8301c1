"""sacct -> allocation records: the Open XDMoD shredder fixtures and one case per quirk.

The XDMoD files (LGPL-3.0) are read from ../shared/data/format-fixtures/xdmod-slurm (env
GPULEDGER_SHARED_DATA), never copied; the tests skip with the reason when they are absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.errors import SourceError
from collectors.run import run_collector
from collectors.slurm import SACCT_FIELDS, SacctCollector, allocations, parse_sacct
from collectors.slurm_fields import array_tasks, gres_gpu_count, parse_duration, tres_gpu_count
from pipeline.records import ALLOCATION, Kind, Record, coerce, parse_ts
from tests.conftest import CannedRun, shared_data

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
QUIRKS = FIXTURES / "sacct-quirks.txt"


def xdmod(name: str) -> Path:
    path = shared_data() / "format-fixtures" / "xdmod-slurm" / name
    if not path.exists():
        pytest.skip(f"Open XDMoD fixture {path} is absent (set GPULEDGER_SHARED_DATA)")
    return path


def ts(text: str) -> int:
    return parse_ts(text + "+00:00")


def by_id(records: Sequence[Record]) -> dict[str, Record]:
    out = {r["allocation_id"]: r for r in records}
    assert len(out) == len(records)
    return out


def quirk_records() -> tuple[dict[str, Record], dict[str, int]]:
    result = parse_sacct(QUIRKS.read_text())
    records = list(allocations(result.jobs, datacentre="dc1", cluster=None))
    for r in records:  # every record meets the contract unchanged
        assert coerce(ALLOCATION, r) == r
    return by_id(records), result.skipped


# ---------------------------------------------------------------- Open XDMoD fixtures


def test_xdmod_accounting_logs_parse_to_the_expected_values() -> None:
    expected = json.loads(xdmod("accounting-logs.expected.json").read_text())
    result = parse_sacct(xdmod("accounting-logs.log").read_text())
    assert result.skipped == {}
    assert len(result.jobs) == len(expected) == 4
    for job, want in zip(result.jobs, expected, strict=True):
        assert job["jobid"] == want["job_id"]
        assert job["jobidraw"] == want["job_id_raw"]
        assert job["partition"] == want["partition_name"]
        assert job["account"] == want["account_name"]
        assert job["user"] == want["user_name"]
        assert job["state"] == want["state"]  # raw text, "CANCELLED by 102216" included
        assert job["alloctres"] == want["alloc_tres"]
        assert job["reqtres"] == want["req_tres"]
        assert job["nodelist"] == want["node_list"]
        assert job["jobname"] == want["job_name"]
        assert job["nnodes"] == want["nnodes"]
        for mine, theirs in (
            (job.submit, want["submit_time"]),
            (job.eligible, want["eligible_time"]),
            (job.start, want["start_time"]),
            (job.end, want["end_time"]),
        ):
            assert mine == (None if theirs is None else theirs * 1000)
        assert job.elapsed_s == want["elapsed"]
        assert job.timelimit_s == want["timelimit"]
        assert job.gpus == want["ngpus"]
    # node lists expand to NNodes names (job 5692623 says 0 nodes but lists two)
    assert [len(j.nodes) for j in result.jobs] == [32, 3, 4, 2]
    assert [j.state for j in result.jobs] == ["TIMEOUT", "CANCELLED", "COMPLETED", "COMPLETED"]


def test_xdmod_accounting_logs_become_allocations() -> None:
    result = parse_sacct(xdmod("accounting-logs.log").read_text())
    records = by_id(list(allocations(result.jobs, datacentre="ub", cluster=None)))
    gpu_job = records["5692623"]
    assert gpu_job == {
        "allocation_id": "5692623",
        "datacentre": "ub",
        "cluster": "ub-hpc",
        "tenant_id": "ccr",
        "event_ts": 1470035049000,
        "job_id": "5692623",
        "gpu_count": 2.0,
        "gpu_uuids": None,
        "nodes": ["cpn-k16-35-01", "cpn-k16-37-01"],
        "start": 1470035049000,
        "end": 1470035049000,
        "state": "COMPLETED",
        "source": "slurm",
    }
    assert records["4107166"]["state"] == "CANCELLED"
    assert records["4107166"]["tenant_id"] == "dspumpkins"
    assert records["4103947"]["gpu_count"] == 0.0


def test_xdmod_job_arrays_expand_to_the_expected_indices() -> None:
    expected = json.loads(xdmod("accounting-logs-with-job-arrays.expected.json").read_text())
    result = parse_sacct(xdmod("accounting-logs-with-job-arrays.log").read_text())
    indices = [[int(j.split("_")[1]) for j in job.job_ids] for job in result.jobs]
    assert indices == expected
    records = list(allocations(result.jobs, datacentre="ub", cluster=None))
    assert len(records) == sum(len(e) for e in expected) == 23
    # 4103947_100 stands alone and in [91,100-102] with the same start: one run printed twice,
    # so one allocation id (the two identical records deduplicate downstream)
    ids = [r["allocation_id"] for r in records]
    assert ids.count("4103947_100") == 2 and len(set(ids)) == 17


def test_xdmod_non_ended_states_stay_open() -> None:
    # XDMoD skips RUNNING / PENDING; gpuledger keeps them as allocations that have not ended
    result = parse_sacct(xdmod("non-ended-job-state.log").read_text())
    running, pending = result.jobs
    assert (running.state, running.start, running.end) == (
        "RUNNING",
        ts("2020-06-30T19:24:08"),
        None,
    )
    assert (pending.state, pending.start, pending.end) == ("PENDING", None, None)


def test_xdmod_unknown_states_are_skipped_and_counted() -> None:
    result = parse_sacct(xdmod("unknown-job-state.log").read_text())
    assert result.jobs == []
    assert result.skipped == {"unknown_state": 2}


def test_xdmod_historical_reqgres_gpu_counts() -> None:
    # May 2020 layout: 25 fields, ReqGRES at index 20 (gpu:V100:32, gpu:P100:2(IDX:1,3), ...)
    folder = "historical-reqgres-2020/"
    expected = json.loads(xdmod(folder + "accounting-logs-with-gpu-gres.expected.json").read_text())
    lines = xdmod(folder + "accounting-logs-with-gpu-gres.log").read_text().splitlines()
    assert [gres_gpu_count(line.split("|")[20]) for line in lines] == expected


# ---------------------------------------------------------------- quirks, one case each


def test_jobname_with_pipes_is_kept_whole() -> None:
    jobs = parse_sacct(QUIRKS.read_text()).jobs
    assert jobs[0]["jobname"] == "train|resnet|v2"
    assert jobs[0]["nodelist"] == "gn[01-02]"


def test_typed_and_untyped_gpu_tres_are_not_double_counted() -> None:
    assert tres_gpu_count("billing=32,cpu=32,gres/gpu:a100=8,gres/gpu=8,mem=64G,node=2") == 8
    assert tres_gpu_count("gres/gpu=1,gres/gpu:a100=1") == 1
    records, _ = quirk_records()
    assert records["1001"]["gpu_count"] == 8.0


def test_typed_only_gpu_tres_are_summed() -> None:
    assert tres_gpu_count("cpu=8,gres/gpu:a100=2,gres/gpu:v100=1") == 3
    records, _ = quirk_records()
    assert records["1002"]["gpu_count"] == 3.0


def test_gpumem_and_gpuutil_are_not_gpus() -> None:
    assert tres_gpu_count("gres/gpumem=40960M,gres/gpuutil=100,cpu=4") == 0
    records, _ = quirk_records()
    assert records["1004"]["gpu_count"] == 4.0


def test_cancelled_by_uid_keeps_the_state_word() -> None:
    records, _ = quirk_records()
    r = records["1002"]
    assert (r["state"], r["start"], r["end"]) == (
        "CANCELLED",
        ts("2026-07-01T06:00:00"),
        ts("2026-07-01T06:30:00"),
    )
    assert r["tenant_id"] == "beta"


def test_array_task_keeps_its_raw_job_id_for_sample_joins() -> None:
    records, _ = quirk_records()
    r = records["1003_4"]
    assert (r["job_id"], r["gpu_count"], r["nodes"]) == ("1010", 1.0, ["gn04"])


def test_compressed_pending_array_is_one_allocation_per_task() -> None:
    assert array_tasks("1003_[5-7%2]") == ["1003_5", "1003_6", "1003_7"]
    assert array_tasks("123_4") == ["123_4"]
    records, _ = quirk_records()
    for task in ("1003_5", "1003_6", "1003_7"):
        r = records[task]
        assert (r["job_id"], r["state"], r["start"], r["end"], r["nodes"]) == (
            task,
            "PENDING",
            None,
            None,
            None,
        )
        assert r["gpu_count"] == 1.0  # from ReqTRES: nothing allocated yet
        assert r["event_ts"] == ts("2026-07-01T01:00:00")  # submit: eligible is Unknown


def test_running_job_has_no_end() -> None:
    records, _ = quirk_records()
    r = records["1004"]
    assert (r["state"], r["start"], r["end"], r["event_ts"]) == (
        "RUNNING",
        ts("2026-07-01T04:00:00"),
        None,
        ts("2026-07-01T04:00:00"),
    )


def test_requeued_runs_keep_their_own_allocation() -> None:
    records, _ = quirk_records()
    first = records[f"1005@{ts('2026-07-01T00:30:00') // 1000}"]
    last = records["1005"]
    assert (first["state"], first["job_id"]) == ("REQUEUED", "1005")
    assert (last["state"], last["start"], last["end"]) == (
        "COMPLETED",
        ts("2026-07-01T01:30:00"),
        ts("2026-07-01T02:30:00"),
    )


def test_bad_lines_are_counted_not_fatal() -> None:
    records, skipped = quirk_records()
    assert skipped == {"unknown_state": 1, "bad_field_count": 1}
    assert "1006" not in records
    assert len(records) == 9


def test_durations() -> None:
    assert parse_duration("3-00:00:00") == 259200
    assert parse_duration("14:20:00") == 51600
    assert parse_duration("05:07") == 307
    assert parse_duration("UNLIMITED") is None


# ---------------------------------------------------------------- the collector


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_incremental_windows_remember_the_last_end(tmp_path: Path) -> None:
    state = tmp_path / "sacct.state.json"
    now = [datetime(2026, 7, 2, 0, 0, tzinfo=UTC).timestamp()]
    fake = CannedRun([QUIRKS.read_text(), ""])
    c = SacctCollector(
        datacentre="dc1",
        cluster="c1",
        state_file=state,
        run=fake,
        clock=lambda: now[0],
        overlap=timedelta(minutes=10),
    )
    first = list(c.collect())
    assert len(first) == 9 and all(k is ALLOCATION for k, _ in first)
    argv = fake.calls[0]
    assert argv[:6] == [
        "sacct",
        "--allusers",
        "--parsable2",
        "--noheader",
        "--allocations",
        "--duplicates",
    ]
    assert _arg(argv, "--format") == ",".join(SACCT_FIELDS)
    assert _arg(argv, "--format").endswith("nodelist,jobname")
    assert _arg(argv, "--starttime") == "2026-07-01T00:00:00"  # first pass: one day back
    assert _arg(argv, "--endtime") == "2026-07-02T00:00:00"
    assert json.loads(state.read_text()) == {"window_end": "2026-07-02T00:00:00+00:00"}

    now[0] += 3600
    again = SacctCollector(datacentre="dc1", state_file=state, run=fake, clock=lambda: now[0])
    assert list(again.collect()) == []
    assert _arg(fake.calls[1], "--starttime") == "2026-07-01T23:50:00"  # last end - overlap
    assert _arg(fake.calls[1], "--endtime") == "2026-07-02T01:00:00"


def test_a_failed_pass_does_not_advance_the_window(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake = CannedRun([SourceError("sacct: exit status 1: slurmdbd unreachable")])
    c = SacctCollector(datacentre="dc1", state_file=state, run=fake, clock=lambda: 1.8e9)
    with pytest.raises(SourceError, match="slurmdbd unreachable"):
        list(c.collect())
    assert not state.exists()


class ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[Kind, Record]] = []
        self.flushes = 0

    def add(self, k: Kind, record: Record) -> None:
        self.records.append((k, record))

    def flush(self) -> None:
        self.flushes += 1


def test_down_or_garbage_source_is_counted_and_the_loop_goes_on() -> None:
    import threading

    answers: list[str | Exception] = [
        SourceError("sacct: not found on this host"),
        "<html>502 Bad Gateway</html>\n",
        QUIRKS.read_text(),
    ]
    fake = CannedRun(answers)
    stop = threading.Event()
    sink = ListSink()
    c = SacctCollector(datacentre="dc1", run=fake, clock=lambda: 1.8e9)

    def progress(_: Any) -> None:
        if not answers:
            stop.set()

    stats = run_collector(
        c, sink, repeat_every_s=0.0, stop=stop, progress=progress, progress_every_s=0.0
    )
    assert stats.source_errors == 2
    assert stats.records == 9 == len(sink.records)


def test_garbage_is_a_source_error_naming_the_source(tmp_path: Path) -> None:
    bad = tmp_path / "not-sacct.txt"
    bad.write_text("JobID JobName Partition\n------ ------- ---------\n")
    with pytest.raises(SourceError, match="not-sacct.txt: no line is sacct"):
        list(SacctCollector(datacentre="dc1", sacct_file=bad).collect())


def test_saved_file_in_local_time_is_normalised(tmp_path: Path) -> None:
    saved = tmp_path / "sacct.txt"
    saved.write_text(QUIRKS.read_text())
    c = SacctCollector(datacentre="dc1", sacct_file=saved, file_tz="Asia/Shanghai")
    records = by_id([r for _, r in c.collect()])
    assert records["1001"]["start"] == parse_ts("2026-07-01T01:00:00+08:00")


def test_the_real_runner_sets_utc_and_iso_times(tmp_path: Path) -> None:
    from collectors.slurm import run_command

    script = tmp_path / "sacct"
    script.write_text('#!/bin/sh\necho "TZ=$TZ SLURM_TIME_FORMAT=$SLURM_TIME_FORMAT $*"\n')
    script.chmod(0o755)
    assert run_command([str(script), "--x"]) == "TZ=UTC SLURM_TIME_FORMAT=standard --x\n"
    failing = tmp_path / "broken"
    failing.write_text("#!/bin/sh\necho 'sacct: error: slurmdbd: Connection refused' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(SourceError, match="exit status 1: sacct: error: slurmdbd"):
        run_command([str(failing)])
    with pytest.raises(SourceError, match="not found on this host"):
        run_command([str(tmp_path / "missing")])
