"""The commands of the streaming path: ``kafka`` (the local broker), ``collect``,
``backfill``, ``ingest`` and ``dlq``.

``gpuledger.cli.build_parser`` calls ``add_commands(sub)``; the functions here only parse
arguments and format output (the logic is in ``collectors`` and ``pipeline``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gpuledger import ops_cli
from gpuledger.shutdown import stop_on_signals
from gpuledger.sources import add_sources
from pipeline.records import KINDS


def _progress(prefix: str) -> Any:
    def show(stats: Any) -> None:
        by_kind = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.by_kind.items()))
        print(
            f"\r{prefix}: {stats.records:,} records ({stats.rate:,.0f}/s) {by_kind}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


# ------------------------------------------------------------------------------- kafka
def cmd_kafka(a: argparse.Namespace) -> int:
    from gpuledger import broker

    settings = broker.BrokerSettings(
        port=a.port, data_dir=a.data_dir, secure=a.secure, secure_port=a.secure_port
    )
    if a.action == "start":
        print(broker.start(settings), flush=True)
        if a.secure:
            print(
                f"SASL_SSL (SCRAM-SHA-512) listener {settings.secure_bootstrap}; client settings "
                f"in {settings.client_properties}: use --kafka {settings.secure_bootstrap} "
                f"--kafka-config {settings.client_properties}",
                file=sys.stderr,
            )
        return 0
    if a.action == "stop":
        stopped = broker.stop(settings)
        print("stopped" if stopped else "not running")
        return 0
    st = broker.status(settings)
    shown: dict[str, Any] = {
        "running": st.running,
        "pid": st.pid,
        "bootstrap": st.bootstrap,
        "answers": st.answers,
    }
    if st.secure_bootstrap is not None:
        shown["secure_bootstrap"] = st.secure_bootstrap
        shown["secure_answers"] = st.secure_answers
        shown["client_properties"] = str(st.client_properties)
    print(json.dumps(shown))
    return 0 if st.answers and st.secure_answers is not False else 1


# ------------------------------------------------------------------------- collect / backfill
def _run(built: Any, sink: Any, verb: str) -> Any:
    """The source's collector into ``sink`` until it ends or a signal stops it, with progress
    on stderr."""
    from collectors.run import run_collector

    return run_collector(
        built.collector,
        sink,
        repeat_every_s=built.repeat_every_s,
        stop=stop_on_signals(),
        progress=_progress(f"{verb} {built.describe}"),
    )


def cmd_collect(a: argparse.Namespace) -> int:
    from collectors.publish import KafkaSink, PublishSettings
    from pipeline.topics import ensure_topics

    built = a.build(a)
    security = ops_cli.kafka_security(a)
    ensure_topics(a.kafka, a.namespace, partitions=a.partitions, security=security)
    sink = KafkaSink(
        PublishSettings(
            bootstrap=a.kafka,
            namespace=a.namespace,
            batch_records=a.batch_records,
            security=security,
            wire=a.wire,
        )
    )
    try:
        stats = _run(built, sink, "collect")
    finally:
        sink.close()
    print(
        f"\npublished {sink.sent_records:,} records in {sink.sent_messages:,} messages to {a.kafka}"
        + (f"; {stats.source_errors} failed scrapes" if stats.source_errors else "")
        + ("; stopped by a signal, everything read was published" if stats.interrupted else "")
    )
    return 0


def cmd_backfill(a: argparse.Namespace) -> int:
    from pipeline.backfill import LakeSink, backfill_load_id

    built = a.build(a)
    load_id = backfill_load_id(a.source_name, vars(a))
    sink = LakeSink(a.lake, load_id, origin=f"backfill {built.describe}")
    run = _run(built, sink, "backfill")
    st = sink.stats
    written = ", ".join(f"{k} {v:,}" for k, v in sorted(st.written.items())) or "nothing"
    print(
        f"\nload {load_id}: wrote {written} into {a.lake} ({st.commits} commits: "
        + ", ".join(f"{t} v{v}" for t, v in sorted(st.versions.items()))
        + "); "
        f"rejected {sum(st.rejected.values()):,}; duplicates {st.duplicates:,}; "
        f"conflicts {st.conflicts:,}"
    )
    for q in st.quarantine:
        print(f"rejected records kept in {q}")
    if run.interrupted:
        print(
            f"stopped by a signal after {run.records:,} records: all of them were written; "
            "run the same backfill again to load the rest (it replaces this partial load)"
        )
    return 0


# ------------------------------------------------------------------------------- ingest
def _build_rollups(lake: Path) -> None:
    from warehouse.catalog.rollup_build import build_rollups

    build_rollups(lake)


def cmd_ingest(a: argparse.Namespace) -> int:
    from pipeline.ingest import Ingestor, IngestSettings
    from pipeline.topics import ensure_topics

    security = ops_cli.kafka_security(a)
    ensure_topics(a.kafka, a.namespace, partitions=a.partitions, security=security)
    settings = IngestSettings(
        security=security,
        bootstrap=a.kafka,
        namespace=a.namespace,
        lake=a.lake,
        group=a.group,
        until_idle_s=a.until_idle,
        max_batch_records=a.max_batch_records,
        max_batch_seconds=a.max_batch_seconds,
        session_timeout_s=a.session_timeout,
        compact_every_s=a.compact_every,
        maintain=_build_rollups,
    )
    registry = None
    if a.metrics_listen:
        from pipeline.ingest_metrics import serve_metrics

        registry, _ = serve_metrics(a.metrics_listen)
    ingestor = Ingestor(settings, registry=registry)

    def show(s: Any) -> None:
        print(
            f"\ringest: landed {s.landed:,}, rejected {s.rejected:,}, commits {s.commits:,}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    s = ingestor.run(stop=stop_on_signals(), progress=show)
    print(
        f"\nlanded {s.landed:,} records in {a.lake} ({s.commits:,} commits); "
        f"rejected {s.rejected:,} to the dead-letter topics"
        + (f" {s.rejected_by_reason}" if s.rejected else "")
        + f"; duplicates {s.duplicates:,}; conflicts {s.conflicts:,}"
        + (f"; fenced batches {s.fenced:,}" if s.fenced else "")
        + ("" if s.lag is None else f"; lag left {s.lag:,} records")
    )
    return 0


def cmd_dlq(a: argparse.Namespace) -> int:
    from pipeline.dead_letter import read_dead_letters
    from pipeline.records import KINDS
    from pipeline.topics import dlq_topic_for

    kinds = [KINDS[a.kind]] if a.kind else list(KINDS.values())
    security = ops_cli.kafka_security(a)
    total = 0
    for k in kinds:
        topic = dlq_topic_for(k, a.namespace)
        for letter in read_dead_letters(a.kafka, topic, idle_timeout_s=a.wait, security=security):
            total += 1
            print(json.dumps({"dlq": topic, **letter.to_json()}, ensure_ascii=False))
    print(f"{total} dead letters", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    """Add ``kafka``, ``collect``, ``backfill``, ``ingest`` and ``dlq`` to the CLI's parsers."""
    _add_kafka(sub)
    _add_collect(sub)
    _add_backfill(sub)
    _add_ingest(sub)
    _add_dlq(sub)


def _add_kafka(sub: Any) -> None:
    p = sub.add_parser("kafka", help="start/stop/status of the local single-node Kafka broker")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=9092, help="client port on 127.0.0.1 (default 9092)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".gpuledger/kafka"),
        help="broker state folder (default .gpuledger/kafka)",
    )
    p.add_argument(
        "--secure",
        action="store_true",
        help="start: also a SASL_SSL listener (SCRAM-SHA-512, a local CA); its client settings "
        "go to <data-dir>/client.properties (for --kafka-config)",
    )
    p.add_argument(
        "--secure-port", type=int, metavar="P", help="SASL_SSL listener port (default port+2)"
    )
    p.set_defaults(func=cmd_kafka)


def _add_collect(sub: Any) -> None:
    p = sub.add_parser("collect", help="run a collector, publishing to Kafka")
    p.add_argument("--kafka", required=True, metavar="HOST:PORT", help="bootstrap server")
    ops_cli.add_kafka_config(p)
    p.add_argument("--namespace", default="", help="topic prefix, e.g. a site id (default none)")
    p.add_argument(
        "--batch-records", type=int, default=64, help="records per Kafka message (default 64)"
    )
    p.add_argument(
        "--wire",
        choices=("json", "arrow"),
        default="json",
        help="message format: json (wire v1, default) or arrow (Arrow IPC, wire v2; docs/wire.md)",
    )
    _add_partitions(p)
    p.set_defaults(func=cmd_collect)
    add_sources(p.add_subparsers(dest="source_name", required=True, metavar="SOURCE"))


def _add_backfill(sub: Any) -> None:
    p = sub.add_parser("backfill", help="run a collector straight into the lake (no broker)")
    p.add_argument("--lake", type=Path, required=True, help="lake folder")
    p.set_defaults(func=cmd_backfill)
    add_sources(p.add_subparsers(dest="source_name", required=True, metavar="SOURCE"))


def _add_ingest(sub: Any) -> None:
    p = sub.add_parser("ingest", help="consume the topics and land records in the Delta lake")
    p.add_argument("--kafka", required=True, metavar="HOST:PORT")
    ops_cli.add_kafka_config(p)
    p.add_argument("--lake", type=Path, required=True)
    p.add_argument("--namespace", default="", help="topic prefix used by the collectors")
    p.add_argument(
        "--group", default="gpuledger-ingest", help="consumer group (default gpuledger-ingest)"
    )
    _add_partitions(p)
    p.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit once every partition is consumed to its end and SECONDS passed without "
        "new records; prints the lag it left (default: run until stopped)",
    )
    p.add_argument("--max-batch-records", type=int, default=250_000)
    p.add_argument("--max-batch-seconds", type=float, default=10.0)
    p.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a dead worker's partitions move to the group's others after this (default 10)",
    )
    p.add_argument(
        "--compact-every",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="compact closed partitions and bring the rollups up to date in the background this "
        "often (default 3600; 0 = off)",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve ingest counters for Prometheus, e.g. 127.0.0.1:9109",
    )
    p.set_defaults(func=cmd_ingest)


def _add_dlq(sub: Any) -> None:
    p = sub.add_parser("dlq", help="print dead letters (rejected records) as JSON lines")
    p.add_argument("--kafka", required=True, metavar="HOST:PORT")
    ops_cli.add_kafka_config(p)
    p.add_argument("--namespace", default="")
    p.add_argument("--kind", choices=sorted(KINDS), help="one record kind (default: all)")
    p.add_argument("--wait", type=float, default=3.0, help="seconds to wait for more (default 3)")
    p.set_defaults(func=cmd_dlq)


def _add_partitions(p: argparse.ArgumentParser) -> None:
    from pipeline.topics import DEFAULT_DLQ_PARTITIONS, DEFAULT_PARTITIONS

    p.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        metavar="N",
        help=f"partitions of each topic this creates (default {DEFAULT_PARTITIONS}: up to N "
        f"ingest workers share a group; dead-letter topics get at most "
        f"{DEFAULT_DLQ_PARTITIONS}); existing topics are left as they are",
    )
