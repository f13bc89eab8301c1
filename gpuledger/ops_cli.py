"""Command-line wiring of the operator surfaces: ``exporter`` and ``alerts``.

``gpuledger.cli.build_parser`` calls ``add_commands(sub)`` to add both sub-commands; the
functions here only parse arguments and format output (the logic is in ``warehouse``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpuledger.shutdown import stop_on_signals
from gpuledger.source_spec import iso_type

DEFAULT_LISTEN = "127.0.0.1:9108"


_INSTANT = iso_type("2020-05-01T00:00Z")


def _instant_ms(text: str) -> int:
    return int(_INSTANT(text).timestamp() * 1000)


def _duration(text: str) -> float:
    from warehouse.ops.alerts.rules import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def write_page(text: str, output: Path | None) -> None:
    """An HTML report (``warehouse.html``) to ``output`` (atomically) or, without it, stdout;
    for ``report utilisation --format html`` and ``audit --format html``."""
    if output is None:
        sys.stdout.write(text)
        return
    from warehouse.html import write_html

    print(f"wrote {write_html(text, output)}", file=sys.stderr)


def add_kafka_config(p: argparse.ArgumentParser) -> None:
    """``--kafka-config FILE``: the Kafka client security settings (``pipeline.kafka_config``)."""
    p.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="Kafka client properties: security.protocol, sasl.mechanism, sasl.username, "
        "sasl.password, ssl.ca.location, ... (values may be ${ENV_NAME}); default PLAINTEXT",
    )


def kafka_security(a: argparse.Namespace) -> Any:
    """The ``KafkaSecurity`` of ``--kafka-config`` (None: PLAINTEXT)."""
    from pipeline.kafka_config import load_optional

    if a.kafka_config is not None and not getattr(a, "kafka", None):
        raise ValueError("--kafka-config needs --kafka HOST:PORT")
    return load_optional(a.kafka_config)


def cmd_exporter(a: argparse.Namespace) -> int:
    from warehouse.ops.exporter import ExporterSettings, parse_listen, serve

    settings = ExporterSettings(
        lake=a.lake,
        kafka=a.kafka,
        namespace=a.namespace,
        group=a.group,
        listen=a.listen,
        horizon_s=a.horizon,
        as_of=a.as_of,
        security=kafka_security(a),
    )
    host, port = parse_listen(a.listen)
    print(f"serving http://{host}:{port}/metrics for {a.lake}", file=sys.stderr, flush=True)
    serve(settings, stop_on_signals(grace_s=None))
    return 0


def cmd_alerts(a: argparse.Namespace) -> int:
    from warehouse.ops.alerts.rules import DEFAULT_RULES, Evaluator, load_rules
    from warehouse.ops.alerts.runner import run_once, run_replay, watch
    from warehouse.ops.alerts.sinks import close_sinks, select_sinks

    security = kafka_security(a)
    rules = load_rules(a.rules) if a.rules else DEFAULT_RULES
    evaluator = Evaluator(rules, horizon_s=a.horizon)
    sinks = select_sinks(
        sys.stdout,
        stdout=a.stdout,
        webhook=a.webhook,
        kafka=a.kafka,
        namespace=a.namespace,
        security=security,
    )
    try:
        if a.replay_from is not None:
            left = run_replay(a.lake, evaluator, sinks, a.replay_from, a.replay_to, a.step)
        elif a.once:
            left = run_once(a.lake, evaluator, sinks, a.at, a.state, a.as_of == "data")
        else:
            stop = stop_on_signals(grace_s=None)
            watch(
                a.lake,
                evaluator,
                sinks,
                a.interval,
                stop,
                state_path=a.state,
                as_of_data=a.as_of == "data",
            )
            return 0
        if left:
            print(
                f"gpuledger: error: {left} alert(s) not delivered to {a.webhook}", file=sys.stderr
            )
        return 1 if left else 0
    finally:
        close_sinks(sinks)


def add_commands(sub: Any) -> None:
    """Add ``exporter`` and ``alerts`` to the CLI's sub-command parsers."""
    _add_exporter(sub)
    _add_alerts(sub)


def _add_exporter(sub: Any) -> None:
    p = sub.add_parser(
        "exporter",
        help="serve fleet and pipeline metrics from the warehouse for Prometheus",
        description="Prometheus /metrics computed from the lake at scrape time.",
    )
    p.add_argument("--lake", type=Path, required=True, help="lake folder")
    p.add_argument("--kafka", metavar="HOST:PORT", help="broker: adds consumer lag and DLQ counts")
    add_kafka_config(p)
    p.add_argument("--namespace", default="", help="topic prefix used by the pipeline")
    p.add_argument("--group", default="gpuledger-ingest", help="ingest consumer group")
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}, loopback only)",
    )
    p.add_argument(
        "--horizon",
        type=_duration,
        default=3600.0,
        metavar="DURATION",
        help="a scope/node/GPU silent longer than this leaves the 'now' gauges (default 1h)",
    )
    p.add_argument(
        "--as-of",
        choices=["wall", "data"],
        default="wall",
        help="'now' = the wall clock (default) or the newest instant in the lake (replays)",
    )
    p.set_defaults(func=cmd_exporter)


def _add_alerts(sub: Any) -> None:
    p = sub.add_parser(
        "alerts",
        help="evaluate idle-capacity and stale-telemetry alerts over the warehouse",
        description="Built-in alerting for sites without Prometheus. Notifications (firing "
        "and resolved, one per transition) go to stdout as JSON lines, to an "
        "Alertmanager-compatible webhook and/or to the alerts.v1 topic.",
    )
    p.add_argument("--lake", type=Path, required=True, help="lake folder")
    p.add_argument(
        "--rules",
        type=Path,
        help="rules TOML (default: the package's alerts/rules.toml; "
        "`gpuledger deploy export` writes a copy to start from)",
    )
    p.add_argument("--webhook", metavar="URL", help="POST Alertmanager webhook payloads here")
    p.add_argument("--kafka", metavar="HOST:PORT", help="also publish to the alerts.v1 topic")
    add_kafka_config(p)
    p.add_argument("--namespace", default="", help="topic prefix for alerts.v1")
    p.add_argument("--stdout", action="store_true", help="JSON lines on stdout as well")
    p.add_argument("--interval", type=_duration, default=60.0, help="evaluation interval (60s)")
    p.add_argument("--horizon", type=_duration, default=3600.0, help="as for exporter (1h)")
    p.add_argument("--state", type=Path, help="keep pending/firing alerts here between runs")
    p.add_argument("--once", action="store_true", help="evaluate once and exit (cron)")
    p.add_argument(
        "--as-of",
        choices=["wall", "data"],
        default="wall",
        help="evaluate at the wall clock (default) or the newest instant in the lake (replays)",
    )
    p.add_argument("--at", type=_instant_ms, metavar="INSTANT", help="with --once: evaluate at")
    p.add_argument(
        "--replay-from",
        type=_instant_ms,
        metavar="INSTANT",
        help="replay: evaluate every --step from this instant over past data",
    )
    p.add_argument("--replay-to", type=_instant_ms, metavar="INSTANT", help="replay end")
    p.add_argument("--step", type=_duration, default=60.0, help="replay step (default 60s)")
    p.set_defaults(func=cmd_alerts)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m gpuledger.ops_cli``), for use before the main CLI has it."""
    parser = argparse.ArgumentParser(prog="gpuledger")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
