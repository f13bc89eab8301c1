"""The warehouse catalogue on Apache Spark: the DuckDB catalogue's views over the same Delta tables.

``register_lake(spark, lake, versions=...)`` registers, as Spark temp views and in the same
dependency order as ``warehouse.catalog.refresh``:

- ``raw_<table>`` for every record kind: the Delta table read with
  ``spark.read.format("delta").option("versionAsOf", v)`` at the version the DuckDB catalogue
  pinned, the contract's columns cast to the Spark types of its DuckDB types, ``_version``,
  ``_load`` and the two columns DuckDB takes from its Parquet scan: ``_file`` (the file's path
  with its percent-encoding undone once: for a local lake exactly DuckDB's ``filename``) and
  ``_row`` (the row's index in its file, DuckDB's ``file_row_number``). Partition values
  (``datacentre``) come from the Delta log, as in DuckDB.
- ``<table>``, ``<table>_conflicts``, ``_snapshot``, the ``warehouse/sql`` views of
  ``catalog.SQL_VIEWS`` whose inputs are registered (not yet ``_loads``: ``_commits`` is DuckDB's
  JSON read of the log) and the voucher views: the DuckDB catalogue's own
  statements rendered for Spark SQL by ``spark_sql`` (a few exact substitutions, listed there),
  so the view SQL has one source. The voucher ``<entity>_history`` views are read here from the
  entity tables and the import ledger at their pinned versions.
- the GPU-sample rollup views (``warehouse.rollup_views``: ``gpu_bins_stored``,
  ``raw_gpu_samples_rest``, ``gpu_extent``, ``gpu_bins_fresh``, ``raw_gpu_samples_open``,
  ``gpu_sample_coverage_open``, ``gpu_bins_live``, ``gpu_bins``) with the DuckDB catalogue's
  decisions (``RollupState``: which partitions are fresh, at which bins commit): stored bins of
  those partitions, raw rows of the others selected on the partition columns.

``render_sql`` renders any DuckDB statement of the project (the reports' too, with their
``$name`` parameters); ``spark_sql`` a view statement.

Versions are always resolved in Python (``pipeline.lake.open_table``, as DuckDB does) and handed
to Spark as ``versionAsOf``: an instant is never passed to Spark, whose ``timestampAsOf`` may
date commits differently. docs/spark.md has the details and the portability rules.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline import lake as lakes
from pipeline.records import KINDS, Kind
from warehouse import catalog
from warehouse import rollup_views as rv

DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
"""The Delta jar the ``delta-spark`` 4.0.0 wheel pairs with (pyspark 4.0.1, Scala 2.13)."""
DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
LOCAL_CONFS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
SESSION_CONFS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.constraintPropagation.enabled": "false",
}
"""Set by ``register_lake`` on its session: the views read instants in UTC, and Spark 4.0.1's
constraint propagation fails (``NoSuchElementException: key not found``) on a union of
checkpointed views; without it the optimizer only infers fewer filters."""
SPARK_TYPES = {
    "TIMESTAMPTZ": "TIMESTAMP",
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "BIGINT": "BIGINT",
    "VARCHAR[]": "ARRAY<STRING>",
}
"""Spark SQL type of each DuckDB type the contract uses (``Kind.duckdb_columns``)."""

_session: SparkSession | None = None


def spark_session() -> SparkSession:
    """The active SparkSession (a cluster driver's), else one shared local[2] session with
    Delta configured (first start: Ivy fetches ``DELTA_PACKAGE`` from Maven Central into
    ``~/.ivy2*``)."""
    global _session
    active = SparkSession.getActiveSession()
    if active is not None and (_session is None or active is _session):
        _session = active  # a spark-submit driver's session (its confs), or ours
        return _session
    from delta import configure_spark_with_delta_pip

    builder: Any = SparkSession.builder.master("local[2]").appName("gpuledger")
    for key, value in {**DELTA_CONFS, **LOCAL_CONFS}.items():
        builder = builder.config(key, value)
    _session = configure_spark_with_delta_pip(builder).getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    return _session


def _bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_literal(text: str) -> str:
    """A DuckDB string literal's value as a Spark literal (Spark reads backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_TOKENS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\"(?:[^\"]|\"\")*\"|[^'\"-]+|-", re.DOTALL)
_LIT = "\x01"
_ID = "\x02"
_PLACEHOLDER = re.compile(f"([{_LIT}{_ID}])(\\d+)[{_LIT}{_ID}]")
_NAME = rf"(?:\w+\.)?(?:\w+|{_ID}\d+{_ID})"
"""A column reference: ``name``, ``alias.name`` or a quoted name (its placeholder)."""
_COUNT_DISTINCT = re.compile(r"\bcount\(DISTINCT ")
_FRAME = re.compile(r"(?:ROWS|RANGE|GROUPS|LIMIT|OFFSET)\b")
_QUALIFY = re.compile(
    r"^(?P<head>CREATE OR REPLACE TEMP VIEW \S+ AS\s+)SELECT\s+(?P<cols>.+?)\s+FROM\s+(?P<rel>\S+)"
    r"\s+QUALIFY\s+(?P<win>.+?)\s*=\s*1$",
    re.DOTALL,
)
_SUBSTITUTIONS = [
    (re.compile(r"\bCREATE OR REPLACE VIEW\b"), "CREATE OR REPLACE TEMP VIEW"),
    (re.compile(r"\bAS MATERIALIZED \("), "AS ("),
    (re.compile(r"\bVARCHAR\b"), "STRING"),
    (re.compile(r"\s*//\s*"), " div "),
    (re.compile(r"(?<![\w.\x01\x02])(\d+\.\d+)(?![\w.])"), r"\1D"),
    (re.compile(r"\[\s*\]"), "array()"),
    (re.compile(r"\barg_max\("), "max_by("),
    (re.compile(r"\bmake_timestamptz\("), "timestamp_micros("),
    (re.compile(r"\blen\("), "array_size("),
]
_USING_JOIN = re.compile(
    r"(?P<l>\w+)(?:\s+AS\s+(?P<la>\w+))?\s+(?P<kind>SEMI|ANTI) JOIN\s+"
    r"(?P<r>\w+)(?:\s+AS\s+(?P<ra>\w+))?\s+USING\s*\((?P<cols>[^()]*)\)"
)
_STRFTIME = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%%": "%"}
JSON_TIMESTAMP = "yyyy-MM-dd HH:mm:ss.SSSSSSx"
"""``to_json``'s instant format on Spark; the fraction is then trimmed as DuckDB writes it."""
_JSON_FRACTION = (
    r'"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.0{6}|(\.\d*[1-9])0*)\+00"',
    '"$1$2+00"',
)


def _close(text: str, i: int) -> int:
    """Index just past the parenthesis that closes the one at ``text[i]``."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    raise ValueError(f"unbalanced parentheses in {text[i:]!r}")


def _split_args(text: str) -> list[str]:
    """The comma-separated arguments of a call (commas inside parentheses stay)."""
    out, depth, start = [], 0, 0
    for j, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:j])
            start = j + 1
    out.append(text[start:])
    return [a.strip() for a in out]


class _Code:
    """A statement's code with every string literal and quoted identifier replaced by a
    placeholder (``\\x01n\\x01``, ``\\x02n\\x02``), so that rewrites never look inside them."""

    def __init__(self, sql: str) -> None:
        self.literals: list[str] = []
        self.names: list[str] = []
        parts = []
        for token in _TOKENS.findall(sql.strip().removesuffix(";")):
            if token.startswith("'"):
                parts.append(self.lit(token[1:-1].replace("''", "'")))
            elif token.startswith('"'):
                self.names.append(token[1:-1].replace('""', '"'))
                parts.append(f"{_ID}{len(self.names) - 1}{_ID}")
            elif not token.startswith("--"):
                parts.append(token)
        self.code = "".join(parts).strip().removesuffix(";").strip()

    def lit(self, value: str) -> str:
        """A placeholder for the string literal ``value``."""
        self.literals.append(value)
        return f"{_LIT}{len(self.literals) - 1}{_LIT}"

    def value(self, text: str) -> str:
        """The value of the string literal whose placeholder is ``text``."""
        m = _PLACEHOLDER.fullmatch(text.strip())
        if m is None or m[1] != _LIT:
            raise ValueError(f"expected a string literal, not {text!r}")
        return self.literals[int(m[2])]

    def duck(self, code: str) -> str:
        """``code`` with the literals and names back in DuckDB's syntax."""

        def put(m: re.Match[str]) -> str:
            i = int(m[2])
            if m[1] == _LIT:
                return "'" + self.literals[i].replace("'", "''") + "'"
            return '"' + self.names[i].replace('"', '""') + '"'

        return _PLACEHOLDER.sub(put, code)

    def restore(self, code: str) -> str:
        """``code`` with the literals re-escaped for Spark and the names in backquotes."""

        def put(m: re.Match[str]) -> str:
            i = int(m[2])
            return _spark_literal(self.literals[i]) if m[1] == _LIT else _bq(self.names[i])

        return _PLACEHOLDER.sub(put, code)


Rewrite = Callable[[list[str], str], tuple[str, int]]
"""A call's rendering: (arguments, the text after the call) -> (Spark text, characters of the
text after the call it consumed)."""


def _calls(code: str, name: str, render: Rewrite) -> str:
    """Every call of the function ``name`` in ``code`` rendered by ``render``."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\(")
    pos = 0
    while m := pattern.search(code, pos):
        end = _close(code, m.end() - 1)
        new, used = render(_split_args(code[m.end() : end - 1]), code[end:])
        code = code[: m.start()] + new + code[end + used :]
        pos = m.start() + 1
    return code


def _one(name: str, args: list[str], n: int) -> None:
    if len(args) != n:
        raise ValueError(f"{name}() with {len(args)} arguments is not rendered (expected {n})")


def _epoch_ms(args: list[str], _after: str) -> tuple[str, int]:
    # epoch_ms(BIGINT) is DuckDB's ms -> timestamp; the project names every such column *_ms
    _one("epoch_ms", args, 1)
    bigint = re.fullmatch(r"(?:\w+\.)?\w*_ms", args[0]) is not None
    return f"{'timestamp_millis' if bigint else 'unix_millis'}({args[0]})", 0


def _timezone(args: list[str], _after: str) -> tuple[str, int]:
    _one("timezone", args, 2)
    tz, ts = args
    if re.fullmatch(_NAME, ts):  # a TIMESTAMPTZ column: its local wall time in tz
        return f"from_utc_timestamp({ts}, {tz})", 0
    if re.search(r"\bAS TIMESTAMP\)", ts):  # a wall time (TIMESTAMP) in tz: the instant
        return f"to_utc_timestamp({ts}, {tz})", 0
    raise ValueError(f"timezone() of {ts!r}: neither a column of instants nor a wall time")


def _generate_series(args: list[str], _after: str) -> tuple[str, int]:
    _one("generate_series", args, 3)
    lo, hi, step = args
    return f"CASE WHEN {lo} <= {hi} THEN sequence({lo}, {hi}, {step}) END", 0


def _range(args: list[str], _after: str) -> tuple[str, int]:
    _one("range", args, 2)
    lo, hi = args
    return (
        f"CASE WHEN ({lo}) < ({hi}) THEN sequence({lo}, ({hi}) - 1) "
        "ELSE CAST(array() AS ARRAY<BIGINT>) END",
        0,
    )


def _unnest(args: list[str], after: str) -> tuple[str, int]:
    _one("unnest", args, 1)
    scaled = re.match(r"\s*([*+])\s*(\d+)\b", after)
    if scaled:  # Spark takes no generator inside an expression: map the list instead
        return f"explode(transform({args[0]}, _u -> _u {scaled[1]} {scaled[2]}))", scaled.end()
    return f"explode({args[0]})", 0


def _list(args: list[str], after: str) -> tuple[str, int]:
    _one("list", args, 1)
    m = re.fullmatch(r"DISTINCT\s+(.+?)\s+ORDER BY\s+(.+?)", args[0], re.DOTALL)
    if m is not None and m[1] == m[2] and not re.match(r"\s*OVER\b", after):
        return f"array_sort(collect_set({m[1]}))", 0
    if re.search(r"\b(?:DISTINCT|ORDER BY)\b", args[0]):
        raise ValueError(f"list({args[0]}) is not rendered")
    return f"collect_list({args[0]})", 0


def _string_agg(args: list[str], _after: str) -> tuple[str, int]:
    m = re.fullmatch(r"DISTINCT\s+(.+?)", args[0], re.DOTALL) if len(args) == 2 else None
    sep = re.fullmatch(rf"({_LIT}\d+{_LIT})\s+ORDER BY\s+(.+?)", args[1], re.DOTALL) if m else None
    if m is None or sep is None or sep[2] != m[1]:
        raise ValueError(f"string_agg({', '.join(args)}) is not rendered")
    x = m[1]
    return (
        f"CASE WHEN count({x}) = 0 THEN NULL "
        f"ELSE array_join(array_sort(collect_set({x})), {sep[1]}) END",
        0,
    )


def _list_contains(args: list[str], _after: str) -> tuple[str, int]:
    _one("list_contains", args, 2)
    return f"(array_position({args[0]}, {args[1]}) > 0)", 0


def _struct_pack(args: list[str], _after: str) -> tuple[str, int]:
    fields = []
    for arg in args:
        m = re.fullmatch(r"(\w+)\s*:=\s*(.+)", arg, re.DOTALL)
        fields.append(arg if m is None else f"{m[2]} AS {m[1]}")
    return f"struct({', '.join(fields)})", 0


def _order_nulls_last(code: str) -> str:
    """Every ``ORDER BY`` key without a NULLS clause gets ``NULLS LAST`` (DuckDB's order)."""
    out, pos = [], 0
    for m in re.finditer(r"\bORDER BY\b", code):
        if m.start() < pos:
            continue
        out.append(code[pos : m.end()])
        depth, j, start, items = 0, m.end(), m.end(), []
        while j < len(code):
            ch = code[j]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and ch == ",":
                items.append(code[start:j])
                start = j + 1
            elif depth == 0 and not re.match(r"\w", code[j - 1 : j]) and _FRAME.match(code, j):
                break
            j += 1
        items.append(code[start:j])
        rendered = []
        for item in items:
            key = item.rstrip()
            if not re.search(r"\bNULLS (?:FIRST|LAST)$", key):
                key += " NULLS LAST"
            rendered.append(key + item[len(item.rstrip()) :])
        out.append(",".join(rendered))
        pos = j
    out.append(code[pos:])
    return "".join(out)


def _semi_anti(code: str) -> str:
    """``a SEMI JOIN b USING (k)`` -> ``a LEFT SEMI JOIN b ON a.k = b.k`` (Spark would put the
    USING columns first), ``ANTI`` alike; ``SEMI JOIN ... ON`` -> ``LEFT SEMI JOIN ... ON``."""

    def on(m: re.Match[str]) -> str:
        left, right = m["la"] or m["l"], m["ra"] or m["r"]
        keys = [c.strip() for c in m["cols"].split(",")]
        cond = " AND ".join(f"{left}.{k} = {right}.{k}" for k in keys)
        lhs = m["l"] + (f" AS {m['la']}" if m["la"] else "")
        rhs = m["r"] + (f" AS {m['ra']}" if m["ra"] else "")
        return f"{lhs} LEFT {m['kind']} JOIN {rhs} ON {cond}"

    code = _USING_JOIN.sub(on, code)
    return re.sub(r"(?<!LEFT )\b(SEMI|ANTI) JOIN\b", r"LEFT \1 JOIN", code)


def _count_distinct_over(code: str) -> str:
    """``count(DISTINCT x) OVER (w)`` -> ``CAST(size(collect_set(x) OVER (w)) AS BIGINT)``;
    ``count(DISTINCT x)`` as an aggregate stays."""
    pos = 0
    while m := _COUNT_DISTINCT.search(code, pos):
        end = _close(code, m.start() + len("count"))
        over = re.match(r"\s*OVER\s*", code[end:])
        if over is None:
            pos = end
            continue
        w0 = end + over.end()
        w1 = _close(code, w0)
        arg = code[m.end() : end - 1]
        new = f"CAST(size(collect_set({arg}) OVER {code[w0:w1]}) AS BIGINT)"
        code = f"{code[: m.start()]}{new}{code[w1:]}"
        pos = m.start() + len(new)
    return code


def _ctes_before(code: str, i: int) -> str:
    """``WITH`` and the statement's CTEs that end before ``code[i]`` (the CTE around it cannot
    name itself): what a branch inside that CTE may read."""
    m = re.search(r"\bWITH\s+", code)
    if m is None or m.start() > i:
        return ""
    done, j = [], m.end()
    while cte := re.match(r"\s*(\w+)\s+AS\s+\(", code[j:]):
        end = _close(code, j + cte.end() - 1)
        if end > i:
            break
        done.append(code[j:end].strip())
        j = end
        comma = re.match(r"\s*,", code[j:])
        if comma is None:
            break
        j += comma.end()
    return f"WITH {', '.join(done)} " if done else ""


def _union_by_name(code: _Code, text: str, describe: Callable[[str], Sequence[str]] | None) -> str:
    """``(A UNION ALL BY NAME B)`` -> ``(A UNION ALL SELECT <A's columns> FROM (B))``, the
    columns of both branches asked of Spark (``describe``: a query's column names)."""
    while m := re.search(r"\bUNION ALL BY NAME\b", text):
        if describe is None:
            raise ValueError("UNION ALL BY NAME needs describe (the columns of a query)")
        depth, start = 0, m.start()
        while start > 0:
            start -= 1
            depth += {")": 1, "(": -1}.get(text[start], 0)
            if depth < 0:
                break
        else:
            raise ValueError("UNION ALL BY NAME is rendered only inside parentheses")
        end = _close(text, start) - 1
        left, right = text[start + 1 : m.start()], text[m.end() : end]
        if "UNION" in right:
            raise ValueError("UNION ALL BY NAME of more than two branches is not rendered")
        ctes = _ctes_before(text, start)
        lcols = list(describe(code.restore(f"{ctes}SELECT * FROM ({left}) LIMIT 0")))
        rcols = list(describe(code.restore(f"{ctes}SELECT * FROM ({right}) LIMIT 0")))
        if sorted(lcols) != sorted(rcols) or len(set(lcols)) != len(lcols):
            raise ValueError(f"UNION ALL BY NAME of {lcols} and {rcols} is not rendered")
        names = ", ".join(_bq(c) for c in lcols)
        text = f"{text[: m.start()]}UNION ALL SELECT {names} FROM ({right.strip()}) {text[end:]}"
    return text


def materialized_ctes(sql: str) -> tuple[list[tuple[str, str]], str] | None:
    """A ``WITH`` statement with CTEs DuckDB materialises (``name AS MATERIALIZED (...)``)
    split into one DuckDB query per such CTE, in order (each may read the ones before it by
    name, and is given the plain CTEs before it), and the statement without them; None when
    it has none. Spark has no such CTE: ``spark_reports`` computes each once."""
    code = _Code(sql)
    text = code.code
    head = re.match(r"WITH\s+", text)
    if head is None or not re.search(r"\bAS MATERIALIZED \(", text):
        return None
    plain: list[str] = []
    out: list[tuple[str, str]] = []
    j = head.end()
    while cte := re.match(r"\s*(\w+)\s+AS\s+(MATERIALIZED\s+)?\(", text[j:]):
        start = j + cte.end() - 1
        end = _close(text, start)
        if cte[2]:
            prefix = f"WITH {', '.join(plain)} " if plain else ""
            out.append((cte[1], code.duck(f"{prefix}SELECT * FROM ({text[start + 1 : end - 1]})")))
        else:
            plain.append(text[j:end].strip())
        j = end
        comma = re.match(r"\s*,", text[j:])
        if comma is None:
            break
        j += comma.end()
    rest = (f"WITH {', '.join(plain)} " if plain else "") + text[j:].strip()
    return out, code.duck(rest)


def render_sql(
    sql: str,
    *,
    params: Mapping[str, Any] | None = None,
    columns: Callable[[str], Sequence[str]] | None = None,
    describe: Callable[[str], Sequence[str]] | None = None,
) -> str:
    """One DuckDB statement of this project rendered for Spark SQL 4.0 (the substitutions are
    listed in ``spark_sql`` and docs/spark.md). ``params``: the values of its ``$name``
    parameters, rendered as literals; ``columns``: a view's column names (for ``SELECT *
    ... QUALIFY``); ``describe``: a query's column names (for ``UNION ALL BY NAME``)."""
    code = _Code(sql)
    text = code.code
    if params is not None or "$" in text:
        text = re.sub(r"\$(\w+)", lambda m: _param(code, params or {}, m[1]), text)
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    text = _semi_anti(text)
    for name, render in (
        ("string_agg", _string_agg),
        ("list", _list),
        ("list_contains", _list_contains),
        ("struct_pack", _struct_pack),
        ("epoch_ms", _epoch_ms),
        ("timezone", _timezone),
        ("generate_series", _generate_series),
        ("range", _range),
        ("unnest", _unnest),
    ):
        text = _calls(text, name, render)
    text = _calls(text, "strftime", lambda a, _: (_strftime(code, a), 0))
    text = _calls(text, "to_json", lambda a, _: (_to_json(code, a), 0))
    text = _count_distinct_over(text)
    text = _union_by_name(code, text, describe)
    text = _order_nulls_last(text)
    if "QUALIFY" in text:
        text = _qualify(code, text, columns)
    return code.restore(text)


def _param(code: _Code, params: Mapping[str, Any], name: str) -> str:
    """A ``$name`` parameter's value as a Spark literal."""
    if name not in params:
        raise ValueError(f"no value for parameter ${name}")
    value = params[name]
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST({code.lit(repr(value))} AS DOUBLE)"
    if isinstance(value, str):
        return code.lit(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"DATE {code.lit(value.isoformat())}"
    raise TypeError(f"parameter ${name}: {type(value).__name__} is not rendered")


def _strftime(code: _Code, args: list[str]) -> str:
    """``strftime(ts, '%Y-%m')`` -> ``date_format(ts, 'yyyy-MM')``."""
    _one("strftime", args, 2)
    out = []
    for piece in re.split(r"(%.)", code.value(args[1])):
        if piece.startswith("%"):
            if piece not in _STRFTIME:
                raise ValueError(f"strftime {piece!r} is not rendered")
            out.append(_STRFTIME[piece])
        elif piece:
            out.append(
                "'" + piece.replace("'", "''") + "'" if re.search("[A-Za-z']", piece) else piece
            )
    return f"date_format({args[0]}, {code.lit(''.join(out))})"


def _to_json(code: _Code, args: list[str]) -> str:
    """``to_json(x)`` -> Spark's with NULL fields kept and instants written as DuckDB writes
    a TIMESTAMPTZ in UTC (``2026-04-01 00:00:00+00``, a fraction only when non-zero)."""
    _one("to_json", args, 1)
    options = ", ".join(
        code.lit(v) for v in ("timestampFormat", JSON_TIMESTAMP, "ignoreNullFields", "false")
    )
    pattern, replacement = (code.lit(v) for v in _JSON_FRACTION)
    # TO_JSON: the same function (names are case-insensitive), not rendered again
    return f"regexp_replace(TO_JSON({args[0]}, map({options})), {pattern}, {replacement})"


def _qualify(code: _Code, text: str, columns: Callable[[str], Sequence[str]] | None) -> str:
    m = _QUALIFY.match(text)
    if m is None:
        raise ValueError(f"QUALIFY of an unsupported shape: {code.restore(text)[:80]!r}")
    cols, rel = m["cols"], m["rel"]
    if cols == "*":
        if columns is None:
            raise ValueError(f"SELECT * ... QUALIFY needs the columns of {code.restore(rel)}")
        cols = ", ".join(_bq(c) for c in columns(code.restore(rel).strip("`")))
    return (
        f"{m['head']}SELECT {cols} FROM (SELECT *, {m['win']} AS _qualify FROM {rel}) "
        "WHERE _qualify = 1"
    )


def spark_sql(
    sql: str,
    columns: Callable[[str], Sequence[str]] | None = None,
    describe: Callable[[str], Sequence[str]] | None = None,
) -> str:
    """One DuckDB view statement of this project rendered for Spark SQL, by these substitutions:

    - ``--`` comments dropped, a trailing ``;`` dropped;
    - ``'...'`` literals re-escaped for Spark (``''`` -> ``\\'``, ``\\`` -> ``\\\\``);
    - ``"name"`` identifiers -> ``\\`name\\```;
    - ``CREATE OR REPLACE VIEW`` -> ``CREATE OR REPLACE TEMP VIEW``; ``AS MATERIALIZED (`` ->
      ``AS (``; ``VARCHAR`` -> ``STRING``; ``a // b`` -> ``a div b`` (both truncate);
      a decimal literal ``3600000.0`` -> ``3600000.0D`` (DuckDB divides by it in DOUBLE);
      ``[]`` -> ``array()``;
    - ``epoch_ms(ts)`` -> ``unix_millis(ts)``, ``epoch_ms(x_ms)`` (a BIGINT column, named
      ``*_ms`` throughout) -> ``timestamp_millis(x_ms)``; ``arg_max(`` -> ``max_by(``
      (with its ``(a, b, ...)`` ordering tuple, which Spark reads as a struct),
      ``make_timestamptz(`` -> ``timestamp_micros(`` (epoch microseconds to a timestamp),
      ``len(`` -> ``array_size(`` (NULL for NULL), ``list_contains(l, x)`` ->
      ``(array_position(l, x) > 0)`` (NULL for a NULL list or value, NULL elements skipped),
      ``struct_pack(a, n := e)`` -> ``struct(a, e AS n)``;
    - ``unnest(x)`` -> ``explode(x)`` (in a select list), ``unnest(x) * k`` ->
      ``explode(transform(x, _u -> _u * k))``; ``range(a, b)`` -> ``sequence(a, b - 1)``
      when ``a < b``, else an empty ``ARRAY<BIGINT>``; ``generate_series(a, b, step)`` ->
      ``sequence(a, b, step)`` when ``a <= b`` (positive steps), else NULL (no rows);
    - ``timezone(tz, col)`` (a TIMESTAMPTZ column) -> ``from_utc_timestamp(col, tz)``,
      ``timezone(tz, <... AS TIMESTAMP)...>)`` (a wall time) -> ``to_utc_timestamp(..., tz)``;
      ``strftime(ts, '%Y-%m-%d')`` -> ``date_format(ts, 'yyyy-MM-dd')``;
    - ``list(DISTINCT x ORDER BY x)`` -> ``array_sort(collect_set(x))``, ``list(x)`` ->
      ``collect_list(x)`` (NULL elements are not kept: the project lists keys);
      ``string_agg(DISTINCT x, sep ORDER BY x)`` -> ``array_join(array_sort(collect_set(x)),
      sep)``, NULL when x has no value;
    - ``to_json(x)`` -> ``to_json(x, ...)`` keeping NULL fields, instants as DuckDB writes
      them in UTC;
    - ``a SEMI JOIN b USING (k)`` -> ``a LEFT SEMI JOIN b ON a.k = b.k`` (Spark would list
      ``k`` first), ``ANTI`` alike, ``SEMI JOIN ... ON`` -> ``LEFT SEMI JOIN ... ON``;
    - ``(A UNION ALL BY NAME B)`` -> ``(A UNION ALL SELECT <A's columns> FROM (B))``, the
      columns asked of Spark by ``describe``;
    - ``count(DISTINCT x) OVER (w)`` -> ``CAST(size(collect_set(x) OVER (w)) AS BIGINT)``;
    - every ``ORDER BY`` key without a NULLS clause -> ``... NULLS LAST`` (DuckDB's default,
      in both directions);
    - ``... AS SELECT cols FROM rel QUALIFY <window> = 1`` -> ``... AS SELECT cols FROM
      (SELECT *, <window> AS _qualify FROM rel) WHERE _qualify = 1`` (Spark 4.0 has no
      QUALIFY); ``SELECT *`` is spelled out with ``columns(rel)``.

    Anything else must already be portable (docs/spark.md); a construct of another shape
    raises ``ValueError``, and so does a statement that is not a view.
    """
    rendered = render_sql(sql, columns=columns, describe=describe)
    if not rendered.startswith("CREATE OR REPLACE TEMP VIEW "):
        raise ValueError(f"not a view statement: {rendered[:60]!r}")
    return rendered


def _file_column() -> Column:
    """``_file``: the scan's file URI without ``file:`` and with percent-encoding undone once
    (``url_decode`` also turns ``+`` into a space, so ``+`` is protected first)."""
    path = F.regexp_replace(F.col("_metadata.file_path"), "^file:", "")
    return F.url_decode(F.replace(path, F.lit("+"), F.lit("%2B")))


def _empty(spark: SparkSession, columns: Sequence[tuple[str, str]]) -> DataFrame:
    return spark.createDataFrame([], ", ".join(f"{_bq(n)} {t}" for n, t in columns))


def _typed(df: DataFrame, columns: Sequence[tuple[str, str]]) -> list[Column]:
    return [F.col(_bq(n)).cast(t).alias(n) for n, t in columns]


def _spark_columns(k: Kind) -> list[tuple[str, str]]:
    return [(n, SPARK_TYPES[t]) for n, t in k.duckdb_columns()]


def raw_frame(
    spark: SparkSession, k: Kind, path: Path, version: int | None, where: Column | None = None
) -> DataFrame:
    """``raw_<table>``: the kind's Delta table at ``version`` (None: no table, zero typed rows)
    with ``_version``, ``_load``, ``_file`` and ``_row``; ``where``: only the rows of the
    partitions it selects (a condition on the partition columns, so whole files)."""
    columns = _spark_columns(k)
    lake_cols = [("_version", "BIGINT"), ("_load", "STRING"), ("_file", "STRING")]
    if version is None:
        return _empty(spark, [*columns, *lake_cols, ("_row", "BIGINT")])
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    if where is not None:
        df = df.where(where)
    # rows reach a task in file order, and the splits of one file reach ascending task ids, so
    # monotonically_increasing_id orders the rows of a file as they are stored
    scan = df.select(
        *_typed(df, columns),
        F.col("_version").cast("BIGINT").alias("_version"),
        F.col("_load").cast("STRING").alias("_load"),
        _file_column().alias("_file"),
        F.monotonically_increasing_id().alias("_scan_id"),
    )
    in_file = Window.partitionBy("_file").orderBy("_scan_id")
    row = (F.row_number().over(in_file) - 1).cast("BIGINT").alias("_row")
    return scan.select(*(n for n, _ in columns), "_version", "_load", "_file", row)


def parts_filter(parts: Iterable[rv.Part]) -> Column:
    """True for the rows of the lake partitions ``parts`` ((datacentre, UTC date)), on the
    partition columns Spark's Delta reader exposes; a NULL datacentre matches NULL."""
    by_dc: dict[str | None, list[str]] = defaultdict(list)
    for dc, day in parts:
        by_dc[dc].append(day)
    cond = F.lit(False)
    for dc, days in sorted(by_dc.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        in_dc = F.col("datacentre").eqNullSafe(F.lit(dc))
        cond = cond | (in_dc & F.col("date").cast("STRING").isin(sorted(days)))
    return cond


BIN_SPARK_COLUMNS = [(name, {"VARCHAR": "STRING"}.get(t, t)) for name, t in rv.BIN_COLUMNS.items()]
"""The columns of a bins row with their Spark types."""


def bins_frame(
    spark: SparkSession, path: Path, version: int | None, keep: Mapping[rv.Part, int]
) -> DataFrame:
    """The stored bins of the partitions in ``keep``, only the rows written by the bins commit
    ``keep`` names for each (``rollup_views._stored_view``)."""
    if version is None or not keep:
        return _empty(spark, BIN_SPARK_COLUMNS)
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    by_commit: dict[tuple[str | None, int], list[str]] = defaultdict(list)
    for (dc, day), v in keep.items():
        by_commit[(dc, int(v))].append(day)
    cond = F.lit(False)
    for (dc, v), days in sorted(by_commit.items(), key=str):
        cond = cond | (
            F.col("datacentre").eqNullSafe(F.lit(dc))
            & F.col("date").cast("STRING").isin(sorted(days))
            & (F.col("_version") == F.lit(v))
        )
    return df.where(cond).select(*_typed(df, BIN_SPARK_COLUMNS))


def rollup_state(
    lake: Path, versions: Mapping[str, int | None], rollups: bool = True
) -> rv.RollupState:
    """Which partitions the DuckDB catalogue serves from stored bins at ``versions``: its
    ``refresh_with_state`` on an in-memory connection (``rollups=False``: none)."""
    import duckdb

    pin = {t: 0 if v is None else int(v) for t, v in versions.items()}
    con = duckdb.connect(":memory:")
    try:
        got, state = catalog.refresh_with_state(con, lake, pin, rollups)
    finally:
        con.close()
    differ = [
        t for t, v in versions.items() if got.get(t) != v and not (v is None and not got.get(t))
    ]
    if differ:
        raise ValueError(f"the DuckDB catalogue read other versions of {differ}")
    return state


def history_frame(
    spark: SparkSession,
    k: Kind,
    path: Path,
    version: int | None,
    ledger: Path,
    ledger_version: int | None,
) -> DataFrame:
    """``<entity>_history``: every version of the entity's records whose import the ledger
    snapshot lists (``warehouse.vouchers`` / ``voucher_ledger``)."""
    columns = _spark_columns(k)
    columns += [("_import_id", "STRING"), ("_imported_at", "TIMESTAMP"), ("_source", "STRING")]
    if version is None or ledger_version is None:
        return _empty(spark, columns)
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    ids = spark.read.format("delta").option("versionAsOf", ledger_version).load(str(ledger))
    visible = ids.select(F.col("import_id").alias("_import_id")).distinct()
    rows = df.select(*_typed(df, columns)).join(visible, "_import_id", "left_semi")
    return rows.select(*(n for n, _ in columns))


def pinned_versions(lake: Path, as_of: lakes.AsOf = None) -> dict[str, int | None]:
    """The version of every lake table (``catalog.table_paths``) at ``as_of``, resolved as
    ``catalog.refresh`` resolves it (None: no such table at that point)."""
    out: dict[str, int | None] = {}
    for name, path in catalog.table_paths(Path(lake).resolve()).items():
        dt = lakes.open_table(path, lakes.version_for(as_of, name))
        out[name] = None if dt is None else int(dt.version())
    return out


class _Recorder:
    """Stands in for a DuckDB connection to collect the statements a catalogue function runs."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, statement: str) -> None:
        self.statements.append(statement)


def _view_name(statement: str) -> str:
    m = re.match(r'\s*CREATE OR REPLACE VIEW "?([^" ]+)"? AS', statement)
    if m is None:
        raise ValueError(f"not a view statement: {statement[:60]!r}")
    return m[1]


@dataclass
class Registered:
    """What ``register_lake`` registered."""

    versions: dict[str, int | None]
    """The version of every lake table read (None: no such table at that point)."""
    views: list[str] = field(default_factory=list)
    """The views registered, in dependency order."""
    skipped: dict[str, str] = field(default_factory=dict)
    """``warehouse/sql`` views not registered, with the reason (an input Spark lacks)."""
    rollups: rv.RollupState | None = None
    """Which partitions the GPU-sample views serve from stored bins (the DuckDB decisions)."""
    cached: list[DataFrame] = field(default_factory=list)
    """The checkpointed views of ``register_lake(cache=True)``."""

    def release(self) -> None:
        """Let the checkpointed rows go (Spark drops them once nothing refers to them)."""
        for df in self.cached:
            df.unpersist()
        self.cached.clear()


def sql_inputs(sql: str) -> list[str]:
    """The views a ``warehouse/sql`` file names on its first line (``...; inputs: a, b``)."""
    m = re.search(r"inputs: ([^;\n]+)", sql.split("\n", 1)[0])
    return [] if m is None else [name.strip() for name in m[1].split(",")]


def register_lake(
    spark: SparkSession,
    lake: Path,
    versions: Mapping[str, int | None] | None = None,
    as_of: lakes.AsOf = None,
    cache: bool = False,
    rollups: rv.RollupState | bool = True,
) -> Registered:
    """Register the catalogue's views over ``lake`` on ``spark``.

    ``versions``: the version of every table (as DuckDB's ``_snapshot`` lists them; None = no
    table), else the snapshot at ``as_of`` (latest when None), resolved as DuckDB resolves it.
    A ``warehouse/sql`` view whose inputs are not all registered is skipped, with the reason.
    ``rollups``: which partitions are served from the stored GPU-sample bins, as the DuckDB
    catalogue decided them (``catalog.refresh_with_state``'s ``RollupState``); True: ask an
    in-memory DuckDB catalogue at ``versions`` (``rollup_state``); False: none (every figure
    from raw rows, as ``connect(..., rollups=False)``).
    ``cache`` keeps every view's rows once computed (``localCheckpoint``, lazily: on first
    use): a pinned snapshot never changes, and a view over checkpointed views plans as one
    over tables (values cut at now() are those of the view's planning, at registration);
    ``Registered.release()`` lets them go."""
    from warehouse.vouchers import ENTITIES, voucher_views

    lake = Path(lake).resolve()
    paths = catalog.table_paths(lake)
    for key, value in SESSION_CONFS.items():
        spark.conf.set(key, value)
    if versions is None:
        versions = pinned_versions(lake, as_of)
    missing = sorted(set(paths) - set(versions))
    if missing:
        raise ValueError(f"versions names no version for {missing}")
    done = Registered({name: versions[name] for name in paths})
    pinned = done.versions
    state = rollups if isinstance(rollups, rv.RollupState) else None
    if state is None:
        state = rollup_state(lake, pinned, bool(rollups))
    done.rollups = state

    def columns(view: str) -> list[str]:
        return spark.table(_bq(view)).columns

    def describe(query: str) -> list[str]:
        return spark.sql(query).columns

    def frame(name: str, df: DataFrame) -> None:
        if cache:
            # computed on first use, then kept; later views see a leaf, not its whole plan
            df = df.localCheckpoint(eager=False)
            done.cached.append(df)
        df.createOrReplaceTempView(name)
        done.views.append(name)

    def run(statement: str) -> None:
        rendered = spark_sql(statement, columns, describe)
        spark.sql(rendered)
        name = rendered.split()[5].strip("`")
        if cache:
            frame(name, spark.table(_bq(name)))
        else:
            done.views.append(name)

    for k in KINDS.values():
        raw, *views = catalog.kind_views(k, None)
        frame(_view_name(raw), raw_frame(spark, k, paths[k.table], pinned[k.table]))
        for statement in views:
            run(statement)
    run(catalog.snapshot_view(pinned))
    # the rollup views, where the DuckDB catalogue has them (``rollup_views``)
    samples, bins = paths[rv.SAMPLES.table], paths[rv.BINS]
    frame("gpu_bins_stored", bins_frame(spark, bins, pinned[rv.BINS], state.unchanged))
    rest = ~parts_filter(state.unchanged) if state.unchanged else None
    sample_version = pinned[rv.SAMPLES.table]
    frame("raw_gpu_samples_rest", raw_frame(spark, rv.SAMPLES, samples, sample_version, rest))
    run(catalog.load_sql("gpu_extent"))
    for name in catalog.SQL_VIEWS:
        sql = catalog.load_sql(name)
        absent = [v for v in sql_inputs(sql) if v not in done.views]
        if absent:
            done.skipped[name] = f"needs {', '.join(absent)}"
        else:
            run(sql)
    frame("gpu_bins_fresh", bins_frame(spark, bins, pinned[rv.BINS], state.fresh))
    open_parts = set(state.stats) - set(state.fresh)
    needed = open_parts | {(dc, rv.next_day(d)) for dc, d in open_parts}
    raw_open = raw_frame(spark, rv.SAMPLES, samples, sample_version, parts_filter(needed))
    frame("raw_gpu_samples_open", raw_open)
    recorder = _Recorder()
    rv.open_views(recorder, state, open_parts)  # type: ignore[arg-type]
    raw_statement, *open_statements = recorder.statements
    assert _view_name(raw_statement) == "raw_gpu_samples_open"
    for statement in [*open_statements, catalog.load_sql("gpu_bins")]:
        run(statement)
    ledger = catalog.LEDGER_SNAPSHOT
    for k in ENTITIES.values():
        history = history_frame(
            spark, k, paths[k.table], pinned[k.table], paths[ledger], pinned[ledger]
        )
        frame(f"{k.table}_history", history)
    recorder = _Recorder()
    voucher_views(recorder, {})  # type: ignore[arg-type]
    for statement in recorder.statements:
        if not _view_name(statement).endswith("_history"):
            run(statement)
    return done
