"""The two kinds of project error (``pipeline.errors``) and how the command line reports them."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from collectors.errors import SourceError
from collectors.hostlist import HostlistError
from collectors.publish import PublishError
from collectors.records_file import InputFileError
from collectors.replay.table import TraceRowError
from collectors.slurm_fields import SacctLineError
from gpuledger import cli, stream_cli
from gpuledger.broker_config import BrokerError
from gpuledger.broker_tls import TlsError
from gpuledger.kafka_jars import JarError
from pipeline.bounds import RecordError
from pipeline.entity_import import VoucherImportError
from pipeline.errors import GpuledgerError, TerminalError, TransientError
from pipeline.kafka_config import KafkaAccessError, KafkaConfigError
from pipeline.lake import Fenced
from pipeline.ledger import ImportRaced
from pipeline.topics import TopicError
from tests.conftest import REPO
from warehouse.reports.query import QueryFailed, QueryRefused
from warehouse.vouchers.pack import PackError

TERMINAL: list[tuple[type[Exception], type[Exception]]] = [
    (RecordError, ValueError),
    (HostlistError, ValueError),
    (InputFileError, ValueError),
    (KafkaConfigError, ValueError),
    (QueryRefused, ValueError),
    (QueryFailed, RuntimeError),
    (SacctLineError, ValueError),
    (TraceRowError, ValueError),
    (TlsError, RuntimeError),
    (JarError, RuntimeError),
    (VoucherImportError, ValueError),
    (PackError, RuntimeError),
]
TRANSIENT: list[tuple[type[Exception], type[Exception]]] = [
    (SourceError, RuntimeError),
    (PublishError, RuntimeError),
    (KafkaAccessError, RuntimeError),
    (TopicError, RuntimeError),
    (Fenced, Exception),
    (BrokerError, RuntimeError),
    (ImportRaced, RuntimeError),
]
PENDING: set[str] = set()
"""Classes still on their built-in base only (none left)."""


def _instance(cls: type[Exception]) -> Exception:
    if cls is InputFileError:
        return InputFileError(Path("claims.csv"), ["claims.csv:3: bad hours"])
    if cls is SacctLineError:
        return SacctLineError("bad_time", "'yesterday'")
    if cls is VoucherImportError:
        return VoucherImportError(["claims.csv:3: bad hours"])
    if cls is Fenced:
        return Fenced("gpuledger-ingest-gpu.samples.v1-0", 10, 5)
    return cls("it went wrong")


@pytest.mark.parametrize(("cls", "builtin"), TERMINAL)
def test_terminal_errors(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, TerminalError) and not issubclass(cls, TransientError)
    assert issubclass(cls, builtin)  # callers still catch it by its built-in base


@pytest.mark.parametrize(("cls", "builtin"), TRANSIENT)
def test_transient_errors(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, TransientError) and not issubclass(cls, TerminalError)
    assert issubclass(cls, builtin)


def test_both_kinds_are_gpuledger_errors() -> None:
    assert issubclass(TerminalError, GpuledgerError) and issubclass(TransientError, GpuledgerError)
    assert not issubclass(TerminalError, TransientError)


def test_every_project_exception_is_terminal_or_transient() -> None:
    """A new exception class in the packages has to say which kind it is."""
    known = {cls for cls, _ in TERMINAL + TRANSIENT}
    pattern = re.compile(r"^class (\w+)\(", re.M)
    for package in ("collectors", "pipeline", "warehouse", "gpuledger"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            names = [n for n in pattern.findall(text) if re.search(r"Error|Exception|Raced", n)]
            names += [n for n in pattern.findall(text) if n in ("Fenced",)]
            if not names:
                continue
            module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
            for name in names:
                cls = getattr(module, name)
                if not issubclass(cls, BaseException) or cls in (
                    GpuledgerError,
                    TerminalError,
                    TransientError,
                ):
                    continue
                if name in PENDING:
                    continue
                assert issubclass(cls, TerminalError) != issubclass(cls, TransientError), (
                    f"{path.relative_to(REPO)}: {name} must derive from exactly one of "
                    "TerminalError, TransientError (pipeline.errors)"
                )
                assert cls in known, f"{name}: add it to TERMINAL or TRANSIENT in this test"


@pytest.mark.parametrize("cls", [cls for cls, _ in TERMINAL + TRANSIENT])
def test_main_reports_project_errors_as_one_line_and_exit_2(
    cls: type[Exception], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exc = _instance(cls)

    def fails(_a: object) -> int:
        raise exc

    monkeypatch.setattr(stream_cli, "cmd_kafka", fails)  # the parser picks the command up by name
    assert cli.main(["kafka", "status"]) == 2
    assert capsys.readouterr().err == f"gpuledger: error: {exc}\n"


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(2, "No such file or directory", "x.csv"),
        ValueError("bad value"),
        RuntimeError("KafkaError from a library"),
    ],
)
def test_main_keeps_reporting_library_errors(
    exc: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(_a: object) -> int:
        raise exc

    monkeypatch.setattr(stream_cli, "cmd_kafka", fails)
    assert cli.main(["kafka", "status"]) == 2
    assert capsys.readouterr().err == f"gpuledger: error: {exc}\n"


def test_main_lets_a_bug_raise_and_verbose_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bug(_a: object) -> int:
        raise KeyError("unexpected")

    monkeypatch.setattr(stream_cli, "cmd_kafka", bug)
    with pytest.raises(KeyError):
        cli.main(["kafka", "status"])

    def refused(_a: object) -> int:
        raise KafkaConfigError("client.properties:3: unknown key")

    monkeypatch.setattr(stream_cli, "cmd_kafka", refused)
    with pytest.raises(KafkaConfigError):
        cli.main(["-v", "kafka", "status"])


def test_exit_codes_table_decides_by_type() -> None:
    assert cli.exit_code(RecordError("bad")) == 2
    assert cli.exit_code(PublishError("broker away")) == 2
    assert cli.exit_code(OSError("disk full")) == 2
    assert cli.exit_code(KeyError("bug")) is None
    assert cli.exit_code(TypeError("bug")) is None


def test_a_refused_records_file_exits_2_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,datacentre\nnot-a-time,dc1\n", encoding="utf-8")
    lake = tmp_path / "lake"
    argv = ["backfill", "--lake", str(lake), "records", "--kind", "gpu_sample", "--file", str(bad)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpuledger: error: ") and "bad.csv" in err
