"""``gpuledger demo``: a real public trace through the local Kafka broker into the lake and out
as reports. Glue only: every step is a project command's function."""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from collectors.publish import KafkaSink, PublishSettings
from collectors.replay.dcgm_file import DcgmFileReplay
from collectors.replay.helios import DEFAULT_HELIOS_DIR, HeliosReplay
from collectors.run import RunStats, run_collector
from gpuledger import broker
from pipeline.defaults import DEFAULT_TZ
from pipeline.ingest import Ingestor, IngestSettings, IngestStats
from pipeline.topics import ensure_topics
from warehouse.catalog import connect
from warehouse.reports.render import Lineage, render
from warehouse.reports.utilisation import lineage, utilisation_report

DCGM_STREAM = Path(__file__).parent / "data" / "dcgm" / "earth-sim-2020-05.prom.gz"
MARKER = ".gpuledger-demo-lake"
SHOWN = (
    "period",
    "datacentre",
    "cluster",
    "scope",
    "capacity_gpu_h",
    "allocated_gpu_h",
    "busy_gpu_h",
    "allocation_rate",
    "utilisation",
    "no_telemetry_share",
    "sources",
)


INTRO = """gpuledger demo: the SenseTime Helios Earth trace (May 2020, 16 virtual clusters,
per-minute occupancy; Hu et al., SC '21, CC BY 4.0 / MIT) plus a DCGM-format GPU sample
stream, through a real Kafka broker into Delta Lake tables, out as DuckDB reports.
"""
NOTE = """  note: the acme-sim/seren-sim GPU samples are SYNTHETIC (real dcgm-exporter format,
  utilisation drawn from the published ACME Seren CDF, NSDI '24); Helios is the real trace."""


def _say(text: str) -> None:
    print(text, flush=True)


def _progress(prefix: str, total: int | None = None) -> Callable[[RunStats], None]:
    def show(stats: RunStats) -> None:
        share = f" {stats.records / total:5.1%}" if total else ""
        print(
            f"\r  {prefix}: {stats.records:>9,} records{share} ({stats.rate:,.0f}/s)   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def _prepare_lake(lake: Path) -> None:
    if lake.exists():
        if not (lake / MARKER).exists():
            raise RuntimeError(f"{lake} exists and is not a demo lake; pass --lake to a new folder")
        shutil.rmtree(lake)
    lake.mkdir(parents=True)
    (lake / MARKER).write_text("created by gpuledger demo; safe to delete\n")


AUDIT_MONTHS = ("2026-04", "2026-05")


@dataclass(frozen=True)
class VoucherAudit:
    """The demo's voucher part: each audited month's audit, and one tenant's statement."""

    audits: dict[str, dict[str, Any]]
    statement: dict[str, Any]

    def text(self) -> str:
        from gpuledger.audit_cli import format_audit

        return "".join(
            f"\n  audit {month}:\n" + format_audit(report, "table")
            for month, report in self.audits.items()
        )


def statement_tenant(report: dict[str, Any]) -> str | None:
    """The most flagged tenant of an audit: the most findings, then the most CNY at stake,
    then the first by id."""
    counts: Counter[str] = Counter()
    stake: Counter[str] = Counter()
    for f in report["findings"]:
        if f["tenant_id"]:
            counts[f["tenant_id"]] += 1
            stake[f["tenant_id"]] += f["cny_at_stake"]
    return min(counts, key=lambda t: (-counts[t], -stake[t], t)) if counts else None


def voucher_audit(out: Path) -> VoucherAudit:
    """Generate a small voucher scenario with one planted case of every finding; audit each
    month of it, and make the statement of the last month's most flagged tenant."""
    from warehouse.vouchers.attribution import open_audit
    from warehouse.vouchers.audit import audit
    from warehouse.vouchers.scenario.build import build_scenario
    from warehouse.vouchers.scenario.model import ScenarioSpec
    from warehouse.vouchers.scenario.write import write_scenario
    from warehouse.vouchers.statement import statement, tenants

    spec = ScenarioSpec(
        anomalies=True, months=3, programme_month=1, nodes_per_dc=1, sample_interval_s=3600
    )
    write_scenario(build_scenario(spec), out)
    con = open_audit(out / "lake")
    try:
        audits = {month: audit(con, month=month) for month in AUDIT_MONTHS}
        last = AUDIT_MONTHS[-1]
        tenant = statement_tenant(audits[last]) or tenants(con)[0]["tenant_id"]
        return VoucherAudit(audits, statement(con, tenant=tenant, month=last))
    finally:
        con.close()


def write_pages(
    reports: Path, utilisation: list[dict[str, Any]], read: Lineage, vouchers: VoucherAudit
) -> list[tuple[str, Path]]:
    """The demo's HTML pages in ``reports``: the utilisation report (``utilisation`` rows, the
    lake versions ``read``), each month's audit and the statement; (what, path) of each."""
    from warehouse.html import (
        write_audit_html,
        write_statement_html,
        write_utilisation_html,
    )

    title = "Helios Earth and the DCGM stream, daily by virtual cluster"
    pages = [
        (
            "utilisation report",
            write_utilisation_html(
                utilisation, reports / "utilisation_day_by_scope.html", title, lineage=read
            ),
        ),
    ]
    for month, report in vouchers.audits.items():
        pages.append((f"audit {month}", write_audit_html(report, reports / f"audit_{month}.html")))
    st = vouchers.statement
    tenant, month = st["tenant"]["tenant_id"], st["month"]
    path = reports / f"statement_{tenant}_{month}.html"
    pages.append((f"statement {tenant} {month}", write_statement_html(st, path)))
    return pages


def _compact(lake: Path) -> None:
    """Compact every partition of the replayed month (all closed) and say what it saved."""
    from pipeline.maintain import compact

    done = compact(lake, before=date(2100, 1, 1))
    samples = [r for r in done if r.table == "gpu_samples" and r.status == "compacted"]
    rows = sum(r.rows for r in samples)
    if rows:
        before = sum(r.bytes_before for r in samples) / rows
        after = sum(r.bytes_after for r in samples) / rows
        _say(
            f"  compacted {len(done)} partitions; GPU samples {before:.1f} -> {after:.1f} bytes "
            f"per sample in {sum(r.files_after for r in samples)} files"
        )
    from warehouse.catalog.rollup_build import build_rollups

    built = build_rollups(lake)
    _say(f"  {built.line()}")


def _start_broker(port: int, data_dir: Path) -> tuple[str, str]:
    """Step 1: the local broker and the topics of a fresh namespace; (bootstrap, namespace)."""
    _say("[1/6] local Kafka broker (Apache Kafka 4.3, KRaft, jars from Maven Central)")
    bootstrap = broker.start(broker.BrokerSettings(port=port, data_dir=data_dir))
    namespace = f"demo{int(time.time())}"
    ensure_topics(bootstrap, namespace)
    _say(f"  broker at {bootstrap}; topics {namespace}.gpu.samples.v1 and 7 more")
    return bootstrap, namespace


def _publish(bootstrap: str, namespace: str) -> int:
    """Step 2: the Helios trace and the DCGM stream to Kafka; the number of records sent."""
    _say("[2/6] collectors publish to Kafka (keyed, gzip, 64 records per message)")
    sink = KafkaSink(PublishSettings(bootstrap=bootstrap, namespace=namespace))
    try:
        run_collector(
            HeliosReplay(DEFAULT_HELIOS_DIR), sink, progress=_progress("helios occupancy", 714_240)
        )
        print(file=sys.stderr)
        dcgm = DcgmFileReplay(
            DCGM_STREAM, datacentre="acme-sim", cluster="seren-sim", interval_s=300.0, speed=None
        )
        run_collector(dcgm, sink, progress=_progress("dcgm gpu samples", 142_848))
        print(file=sys.stderr)
    finally:
        sink.close()
    _say(f"  published {sink.sent_records:,} records in {sink.sent_messages:,} messages")
    return sink.sent_records


def _ingest(bootstrap: str, namespace: str, lake: Path, sent: int) -> None:
    """Step 3: ingest the namespace's topics into ``lake`` until idle, then compact it."""
    _say("[3/6] ingest: validate, dedup, one Delta commit per table with the Kafka offsets")

    def show(s: IngestStats) -> None:
        print(
            f"\r  landed {s.landed:>9,} / {sent:,} records, rejected {s.rejected:,}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    stats = Ingestor(
        IngestSettings(
            bootstrap=bootstrap,
            lake=lake,
            namespace=namespace,
            group=f"{namespace}-ingest",
            until_idle_s=5.0,
        )
    ).run(progress=show)
    print(file=sys.stderr)
    _say(
        f"  landed {stats.landed:,} records in {stats.commits:,} commits; "
        f"rejected {stats.rejected:,} (dead letters in {namespace}.<topic>.dlq)"
    )
    if stats.landed != sent:
        _say(f"  WARNING: published {sent:,} but landed {stats.landed:,}")
    _compact(lake)


def _report(lake: Path, db: Path, reports: Path, scenario: Path) -> VoucherAudit:
    """Step 4: the utilisation reports of ``lake`` (CSV, JSON, HTML pages in ``reports``, the
    monthly tables printed) and the voucher scenario's audits in ``scenario``."""
    _say(f"[4/6] monthly utilisation report ({DEFAULT_TZ}), per virtual cluster")
    con = connect(lake, db)
    by_scope = utilisation_report(con, period="month", by="scope", date_from=None, date_to=None)
    by_cluster = utilisation_report(con, period="month", by="cluster", date_from=None, date_to=None)
    daily = utilisation_report(con, period="day", by="scope", date_from=None, date_to=None)
    read = lineage(con)
    con.close()
    reports.mkdir(exist_ok=True)
    (reports / "utilisation_month_by_scope.csv").write_text(render(by_scope, "csv", lineage=read))
    (reports / "utilisation_month_by_cluster.json").write_text(
        render(by_cluster, "json", lineage=read)
    )
    vouchers = voucher_audit(scenario)
    pages = write_pages(reports, daily, read, vouchers)
    _say("  pages to open in a browser:")
    for what, path in pages:
        _say(f"    {what + ':':<28}{path.resolve()}")
    _say("")
    sys.stdout.write(render(by_scope, "table", SHOWN))
    _say("\n  per cluster:")
    sys.stdout.write(render(by_cluster, "table", SHOWN, lineage=read))
    return vouchers


REGISTRY_SHOWN = (
    "period",
    "datacentres",
    "capacity_gpu_h",
    "allocated_gpu_h",
    "busy_gpu_h",
    "allocation_rate",
    "utilisation",
    "no_telemetry_share",
)
"""The columns of the demo's region / ownership tables, after the group's own column."""


def registry_reports(lake: Path) -> str:
    """The monthly utilisation of ``lake`` by region and by ownership of its data-centre
    registry, as tables (as ``gpuledger report utilisation --by region`` / ``--by ownership``
    compute them), the lake versions read under the second."""
    from dataclasses import replace

    from gpuledger.lake_args import open_engine

    con, engine = open_engine(lake, None)
    try:
        con.execute("SET enable_progress_bar = false")  # a slow query's bar would go to stdout
        rows = {
            by: utilisation_report(con, period="month", by=by, tz=DEFAULT_TZ)
            for by in ("region", "ownership")
        }
        read = replace(lineage(con), engine=engine)
    finally:
        con.close()
    columns = {by: (REGISTRY_SHOWN[0], by, *REGISTRY_SHOWN[1:]) for by in rows}
    return (
        "\n  utilisation by region (the scenario's data-centre registry):\n"
        + render(rows["region"], "table", columns["region"])
        + "\n  by ownership:\n"
        + render(rows["ownership"], "table", columns["ownership"], lineage=read)
    )


def _where(lake: Path, db: Path, reports: Path, scenario: Path, vouchers: VoucherAudit) -> None:
    """Step 6: where the lake, the DuckDB file, the reports and the scenario are, and commands
    to try on them."""
    _say("\n[6/6] where things are")
    _say(f"  lake (Delta Lake tables):        {lake.resolve()}")
    _say(f"  DuckDB file with views:          {db.resolve()}")
    _say(f"  reports as CSV / JSON / HTML:    {reports.resolve()}")
    _say(f"  voucher scenario (lake, vouchers, ground truth): {scenario.resolve()}")
    _say(
        f"  try: gpuledger audit --lake {scenario / 'lake'} --month {AUDIT_MONTHS[-1]} "
        "--format json"
    )
    st = vouchers.statement
    _say(
        f"       gpuledger statement --lake {scenario / 'lake'} --tenant "
        f"{st['tenant']['tenant_id']} --month {st['month']}"
    )
    _say(f"       gpuledger report utilisation --lake {scenario / 'lake'} --by region")
    _say(f"  try: gpuledger report utilisation --lake {lake} --period day --by scope --format csv")
    _say(f"       gpuledger lake history --lake {lake}")
    _say(
        f"       gpuledger sql --lake {lake} "
        '"SELECT datacentre, count(*) FROM gpu_samples GROUP BY 1"'
    )
    _say(
        f'       python -c "import duckdb; '
        f"duckdb.connect('{db}').sql('FROM occupancy LIMIT 5').show()\""
    )


def run_demo(lake: Path, port: int, data_dir: Path) -> int:
    started = time.monotonic()
    _say(INTRO)
    bootstrap, namespace = _start_broker(port, data_dir)
    _prepare_lake(lake)
    sent = _publish(bootstrap, namespace)
    _ingest(bootstrap, namespace, lake, sent)
    db = lake / "_warehouse.duckdb"
    reports = lake / "_reports"
    scenario = lake / "_voucher_scenario"
    vouchers = _report(lake, db, reports, scenario)

    _say("\n[5/6] compute-voucher audit on a generated programme landscape (planted anomalies)")
    sys.stdout.write(vouchers.text())
    sys.stdout.write(registry_reports(scenario / "lake"))

    _where(lake, db, reports, scenario, vouchers)
    _say(
        f"  the broker keeps running at {bootstrap}; stop it with: "
        f"gpuledger kafka stop --data-dir {data_dir}"
    )
    _say(NOTE)
    _say(f"done in {time.monotonic() - started:.0f}s")
    return 0
