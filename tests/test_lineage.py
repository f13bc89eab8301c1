"""Lineage and time travel: every report names the lake versions it read, ``--as-of`` with
that token (or an instant between two commits) reproduces it byte for byte after late data
changed the figures; ``gpuledger sql`` answers read-only queries and refuses everything else."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gpuledger.cli import main
from pipeline.entity_import import import_files
from pipeline.lake import parse_as_of
from pipeline.records import GPU_SAMPLE, OCCUPANCY, coerce
from pipeline.write import write_records
from warehouse.catalog import connect
from warehouse.html import audit_html, utilisation_html
from warehouse.html.page import lineage_footer
from warehouse.reports.query import QueryRefused, open_readonly, run_query, unique_names
from warehouse.reports.render import Lineage, json_default, render
from warehouse.reports.utilisation import lineage
from warehouse.vouchers.scenario.build import build_scenario
from warehouse.vouchers.scenario.model import ScenarioSpec
from warehouse.vouchers.scenario.write import write_scenario

H = 3_600_000
APRIL = 1774972800000  # 2026-04-01T00:00+08:00
SMALL = {"months": 3, "programme_month": 1, "nodes_per_dc": 1, "sample_interval_s": 3600}
MONTH = "2026-04"
LATE_CLAIM = "cl-late-double"


def cli(*argv: str) -> tuple[int, str, str]:
    """``gpuledger <argv>``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse errors
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def ok(*argv: str) -> str:
    rc, out, err = cli(*argv)
    assert rc == 0, err
    return out


REPORTS: dict[str, tuple[str, ...]] = {
    "util-csv": ("report", "utilisation", "--by", "cluster", "--format", "csv"),
    "util-json": ("report", "utilisation", "--period", "day", "--format", "json"),
    "util-table": ("report", "utilisation", "--by", "datacentre"),
    "audit-json": ("audit", "--month", MONTH, "--format", "json"),
    "audit-csv": ("audit", "--month", MONTH, "--format", "csv"),
    "audit-table": ("audit", "--month", MONTH),
    "effect-json": ("report", "effectiveness", "--programme", "SH-CV", "--format", "json"),
    "effect-csv": ("report", "effectiveness", "--programme", "SH-CV", "--format", "csv"),
    "effect-table": ("report", "effectiveness", "--programme", "SH-CV"),
}


@dataclass
class History:
    lake: Path
    between: datetime  # after every first commit, before every late one
    first: dict[str, str] = field(default_factory=dict)
    second: dict[str, str] = field(default_factory=dict)

    def run(self, name: str, *extra: str) -> str:
        return ok(*REPORTS[name], "--lake", str(self.lake), *extra)

    def token(self) -> str:
        return json.loads(self.first["audit-json"])["lineage"]["as_of"]


def late_data(lake: Path, out: Path) -> None:
    """Three late commits that change the figures: GPU samples of a new GPU (busy hours), the
    first occupancy (a table that did not exist: the capacity source of dc-cd changes) and a
    claim that claims an allocation again (a DOUBLE_CLAIM in the audit month)."""
    samples = [
        coerce(
            GPU_SAMPLE,
            {
                "ts": APRIL + h * H,
                "interval_s": 3600.0,
                "datacentre": "dc-sh",
                "cluster": "main",
                "node": "dc-sh-n00",
                "gpu_uuid": "GPU-late",
                "util": 1.0,
                "source": "late",
            },
        )
        for h in range(48)
    ]
    write_records(lake, GPU_SAMPLE, samples, "late-samples")
    occupancy = coerce(
        OCCUPANCY,
        {
            "ts": APRIL,
            "interval_s": 86400.0,
            "datacentre": "dc-cd",
            "cluster": "main",
            "gpus_total": 8.0,
            "gpus_allocated": 8.0,
            "source": "late",
        },
    )
    write_records(lake, OCCUPANCY, [occupancy], "late-occupancy")
    with (out / "vouchers" / "claims.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        first = next(r for r in reader if r["claim_id"].startswith(f"cl-{MONTH}-"))
        header = list(reader.fieldnames or [])
    late = out / "late_claims.csv"
    with late.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerow(
            {**first, "claim_id": LATE_CLAIM, "submitted_at": "2026-07-20T00:00:00+00:00"}
        )
    import_files(lake, {"claim": [late]})


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    out = tmp_path_factory.mktemp("scenario")
    write_scenario(build_scenario(ScenarioSpec(seed=7, anomalies=True, **SMALL)), out)  # type: ignore[arg-type]
    h = History(out / "lake", datetime.now(UTC))
    for name in REPORTS:
        h.first[name] = h.run(name)
    time.sleep(0.05)
    h.between = datetime.now(UTC)
    time.sleep(0.05)
    late_data(h.lake, out)
    for name in REPORTS:
        h.second[name] = h.run(name)
    return h


# ------------------------------------------------------------------------------- lineage


def test_every_output_names_the_versions_it_read(history: History) -> None:
    audit = json.loads(history.first["audit-json"])
    read = audit["lineage"]
    assert read["engine"] == "duckdb"
    assert read["tables"]["occupancy"] == 0  # no commit yet: the empty version 0
    assert read["tables"]["gpu_samples"] >= 1 and read["tables"]["claims"] >= 1
    token = read["as_of"]
    assert parse_as_of(token) == read["tables"]
    assert json.loads(history.first["effect-json"])["lineage"] == read
    rows = json.loads(history.first["util-json"])
    assert rows and all(r["lake_versions"] == token for r in rows)
    for name in ("util-csv", "audit-csv", "effect-csv"):
        first_line = history.first[name].splitlines()[0]
        assert first_line == f"# lake versions: {token}; reproduce with --as-of {token}", name
        # the rest is plain CSV with its header
        rest = list(csv.reader(io.StringIO(history.first[name].split("\n", 1)[1])))
        assert rest[0][0] in ("period", "finding"), name
    for name in ("util-table", "audit-table", "effect-table"):
        assert history.first[name].splitlines()[-1] == f"lake versions: {token}", name


def test_late_data_changes_every_report(history: History) -> None:
    for name in REPORTS:
        assert history.first[name] != history.second[name], name
    audit = json.loads(history.second["audit-json"])
    assert LATE_CLAIM in {f["claim_id"] for f in audit["findings"]}
    before = json.loads(history.first["audit-json"])["lineage"]["tables"]
    after = audit["lineage"]["tables"]
    assert after["gpu_samples"] == before["gpu_samples"] + 1
    assert after["occupancy"] == 1 and after["claims"] == before["claims"] + 1


@pytest.mark.parametrize("name", list(REPORTS))
def test_as_of_the_printed_token_reproduces_byte_for_byte(history: History, name: str) -> None:
    assert history.run(name, "--as-of", history.token()) == history.first[name]


@pytest.mark.parametrize("name", ["util-csv", "util-json", "util-table", "audit-json"])
def test_as_of_an_instant_between_the_commits_reproduces(history: History, name: str) -> None:
    assert history.run(name, "--as-of", history.between.isoformat()) == history.first[name]
    shanghai = history.between.astimezone(timezone(timedelta(hours=8)))
    assert history.run(name, "--as-of", shanghai.isoformat()) == history.first[name]


def test_as_of_reads_in_memory_and_leaves_the_warehouse_file(history: History) -> None:
    # reports use a private in-memory catalogue: they never write (or lock) a warehouse file
    history.run("util-csv", "--as-of", history.token())
    history.run("util-csv")
    assert not (history.lake / "_warehouse.duckdb").exists()
    # the plain report still reads the latest snapshot
    assert history.run("util-csv") == history.second["util-csv"]


def test_as_of_arguments_are_checked(history: History) -> None:
    lake = str(history.lake)
    for bad, says in (
        ("gpu_samples=x", "is not table=version"),
        ("gpu_sample=1", "no lake table gpu_sample"),
        ("2026-05-01T00:00:00", "needs a UTC offset"),
        ("yesterday", "neither table=version"),
    ):
        rc, _, err = cli("report", "utilisation", "--lake", lake, "--as-of", bad)
        assert rc == 2 and says in err, err
        rc, _, err = cli("audit", "--lake", lake, "--month", MONTH, "--as-of", bad)
        assert rc == 2 and says in err, err
    rc, _, err = cli("report", "utilisation", "--lake", lake, "--as-of", "gpu_samples=99")
    assert rc == 2 and "gpu_samples has no version 99" in err


def test_html_pages_name_the_versions(history: History, tmp_path: Path) -> None:
    token = history.token()
    ok("report", "utilisation", "--lake", str(history.lake), "--as-of", token,
       "--format", "html", "--output", str(tmp_path / "u.html"))  # fmt: skip
    ok("audit", "--lake", str(history.lake), "--month", MONTH, "--as-of", token,
       "--format", "html", "--output", str(tmp_path / "a.html"))  # fmt: skip
    for page in ("u.html", "a.html"):
        text = (tmp_path / page).read_text()
        assert f"<code>--as-of {token}</code>" in text and f'data-as-of="{token}"' in text
        assert "gpu_samples v" in text


def test_lineage_footer_is_escaped() -> None:
    read = Lineage({"<b>x</b>": 2, "y": None})
    assert read.as_of == "<b>x</b>=2,y=0"
    page = utilisation_html([], lineage=read)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; v2" in page
    assert "y v0" in page
    report = {"month": "2026-04", "tz": "UTC", "findings": [], "programmes": [], "clean": []}
    assert '<footer class="lineage"' not in audit_html(report)
    assert lineage_footer(None) == ""
    assert "&lt;b&gt;" in audit_html({**report, "lineage": read.to_json()})


def test_render_without_lineage_is_unchanged() -> None:
    rows = [{"a": 1, "b": None}]
    assert render(rows, "json") == '[\n  {\n    "a": 1,\n    "b": null\n  }\n]\n'
    assert render(rows, "csv") == "a,b\n1,\n"
    read = Lineage({"t": 3})
    assert json.loads(render(rows, "json", lineage=read)) == [
        {"a": 1, "b": None, "lake_versions": "t=3"}
    ]
    assert render([], "table", lineage=read) == "(no rows)\nlake versions: t=3\n"


def test_lineage_of_an_empty_lake(tmp_path: Path) -> None:
    con = connect(tmp_path, ":memory:")
    read = lineage(con)
    assert set(read.tables.values()) == {None} and set(read.versions.values()) == {0}
    # a token of an empty lake reads an empty lake (no table has a version 0 to read)
    con2 = connect(tmp_path, ":memory:", as_of=parse_as_of(read.as_of))
    assert lineage(con2).tables == read.tables


# ------------------------------------------------------------------------------- sql


def test_sql_query_in_three_formats(history: History) -> None:
    lake = str(history.lake)
    query = (
        "SELECT gpu_uuid, ts, util FROM gpu_samples WHERE gpu_uuid = 'GPU-late' ORDER BY ts LIMIT 3"
    )
    rc, out, err = cli("sql", "--lake", lake, "--format", "json", query)
    assert rc == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and [list(r) for r in rows] == [["gpu_uuid", "ts", "util"]] * 3
    assert rows[0] == {"gpu_uuid": "GPU-late", "ts": "2026-03-31T16:00:00+00:00", "util": 1.0}
    assert datetime.fromisoformat(rows[1]["ts"]).timestamp() * 1000 == APRIL + H
    latest = json.loads(history.second["audit-json"])["lineage"]["as_of"]
    assert f"lake versions: {latest}" in err
    out = ok("sql", "--lake", lake, "--format", "csv", query)
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert out.startswith("gpu_uuid,ts,util\n") and parsed[2]["ts"] == "2026-03-31T18:00:00+00:00"
    lines = ok("sql", "--lake", lake, query).splitlines()
    assert lines[0].split() == ["gpu_uuid", "ts", "util"] and set(lines[1]) == {"-", " "}
    assert lines[2].index("2026-03-31T16") == lines[0].index("ts")  # aligned columns
    assert len(lines) == 5


def test_sql_as_of_reads_the_old_snapshot(history: History) -> None:
    query = "SELECT count(*) AS n FROM gpu_samples WHERE gpu_uuid = 'GPU-late'"
    assert json.loads(ok("sql", "--lake", str(history.lake), "--format", "json", query)) == [
        {"n": 48}
    ]
    old = ok(
        "sql", "--lake", str(history.lake), "--as-of", history.token(), "--format", "csv", query
    )
    assert old == "n\n0\n"
    snap = ok("sql", "--lake", str(history.lake), "--as-of", history.token(), "--format", "json",
              "FROM _snapshot WHERE table_name = 'occupancy'")  # fmt: skip
    # occupancy has a commit now: the token reads its version 0, the empty table
    assert json.loads(snap) == [{"table_name": "occupancy", "version": 0}]


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "DROP VIEW gpu_samples",
        "CREATE TABLE t AS SELECT 1",
        "SET enable_external_access = true",
        "ATTACH 'other.duckdb'",
        "INSTALL httpfs",
        "EXPLAIN ANALYZE SELECT 1",
        "SELECT 1; DROP VIEW gpu_samples",
        "SELECT 1; SELECT 2",
        "",
    ],
)
def test_sql_refuses_anything_but_one_query(
    history: History, statement: str, tmp_path: Path
) -> None:
    rc, out, err = cli("sql", "--lake", str(history.lake), statement.replace("/tmp", str(tmp_path)))
    assert rc == 2 and out == "" and "refused" in err, err
    assert not (tmp_path / "x.csv").exists()
    # nothing changed: the views are all there
    assert ok("sql", "--lake", str(history.lake), "--format", "csv",
              "SELECT count(*) AS n FROM gpu_samples") != "n\n0\n"  # fmt: skip


def test_sql_cannot_touch_files_outside_the_lake(history: History, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    for query in (
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_csv('{history.lake}/../{secret.name}')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ):
        rc, out, err = cli("sql", "--lake", str(history.lake), query)
        assert rc == 1 and out == "" and "Permission Error" in err, (query, err)
    # files under the lake stay readable (the views need them)
    log = next((history.lake / "gpu_samples" / "_delta_log").glob("*.json"))
    assert ok("sql", "--lake", str(history.lake), "--format", "csv",
              f"SELECT count(*) AS n FROM read_text('{log}')") == "n\n1\n"  # fmt: skip


def test_sql_connection_is_locked_even_without_the_statement_check(
    history: History, tmp_path: Path
) -> None:
    """Defence in depth: the connection itself cannot write files or be unlocked."""
    con = open_readonly(history.lake)
    try:
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
        assert con.execute("SELECT count(*) FROM allocations").fetchone() != (0,)
    finally:
        con.close()
    assert not (tmp_path / "x.csv").exists()


def test_sql_module(history: History, tmp_path: Path) -> None:
    result = run_query(history.lake, "SELECT 1 AS a, 2 AS a, 3 AS a_1")
    assert result.columns == ["a", "a_2", "a_1"] and result.rows == [{"a": 1, "a_2": 2, "a_1": 3}]
    assert unique_names(["x", "x", "x"]) == ["x", "x_1", "x_2"]
    with pytest.raises(QueryRefused):
        run_query(history.lake, "DELETE FROM gpu_samples")
    with pytest.raises(FileNotFoundError):
        run_query(tmp_path / "nope", "SELECT 1")
    rows = run_query(history.lake, "DESCRIBE gpu_samples").rows
    assert any(r["column_name"] == "ts" for r in rows)
    nested = run_query(history.lake, "SELECT [1, 2] AS l, {'k': DATE '2026-04-01'} AS s").rows
    assert render(nested, "csv") == 'l,s\n"[1, 2]","{""k"": ""2026-04-01""}"\n'
    assert json.loads(render(nested, "json")) == [{"l": [1, 2], "s": {"k": "2026-04-01"}}]


def test_sql_errors_are_reported(history: History) -> None:
    rc, out, err = cli("sql", "--lake", str(history.lake), "SELEC 1")
    assert rc == 1 and "syntax error" in err
    rc, out, err = cli("sql", "--lake", str(history.lake), "SELECT * FROM no_such_view")
    assert rc == 1 and "no_such_view" in err


def test_json_default_writes_instants_and_decimals_readably() -> None:
    assert json_default(Decimal("1.5")) == 1.5
    assert json_default(datetime(2026, 4, 1, tzinfo=UTC)) == "2026-04-01T00:00:00+00:00"
    assert json_default(timedelta(minutes=1)) == 60.0
    assert json_default(b"\x01\x02") == "0102"
