"""The rewrites ``warehouse.spark.sql.render_sql`` applies to a DuckDB statement, one by one:
function calls (``epoch_ms``, ``timezone``, ``list``, ``string_agg``, ``strftime``, ``to_json``,
...), ``$name`` parameters, and clauses (``SEMI``/``ANTI`` joins, ``UNION ALL BY NAME``,
``count(DISTINCT) OVER``, ``ORDER BY`` nulls, ``QUALIFY``). Each raises ``ValueError`` for a
shape it does not render; the list of substitutions is ``spark_sql``'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from warehouse.spark.sql_code import LIT, NAME, Code, bq, close, split_args

_COUNT_DISTINCT = re.compile(r"\bcount\(DISTINCT ")
_FRAME = re.compile(r"(?:ROWS|RANGE|GROUPS|LIMIT|OFFSET)\b")
_QUALIFY = re.compile(
    r"^(?P<head>CREATE OR REPLACE TEMP VIEW \S+ AS\s+)SELECT\s+(?P<cols>.+?)\s+FROM\s+(?P<rel>\S+)"
    r"\s+QUALIFY\s+(?P<win>.+?)\s*=\s*1$",
    re.DOTALL,
)
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


Rewrite = Callable[[list[str], str], tuple[str, int]]
"""A call's rendering: (arguments, the text after the call) -> (Spark text, characters of the
text after the call it consumed)."""


def calls(code: str, name: str, render: Rewrite) -> str:
    """Every call of the function ``name`` in ``code`` rendered by ``render``."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\(")
    pos = 0
    while m := pattern.search(code, pos):
        end = close(code, m.end() - 1)
        new, used = render(split_args(code[m.end() : end - 1]), code[end:])
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
    if re.fullmatch(NAME, ts):  # a TIMESTAMPTZ column: its local wall time in tz
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
    sep = re.fullmatch(rf"({LIT}\d+{LIT})\s+ORDER BY\s+(.+?)", args[1], re.DOTALL) if m else None
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


def order_nulls_last(code: str) -> str:
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


def semi_anti(code: str) -> str:
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


def count_distinct_over(code: str) -> str:
    """``count(DISTINCT x) OVER (w)`` -> ``CAST(size(collect_set(x) OVER (w)) AS BIGINT)``;
    ``count(DISTINCT x)`` as an aggregate stays."""
    pos = 0
    while m := _COUNT_DISTINCT.search(code, pos):
        end = close(code, m.start() + len("count"))
        over = re.match(r"\s*OVER\s*", code[end:])
        if over is None:
            pos = end
            continue
        w0 = end + over.end()
        w1 = close(code, w0)
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
        end = close(code, j + cte.end() - 1)
        if end > i:
            break
        done.append(code[j:end].strip())
        j = end
        comma = re.match(r"\s*,", code[j:])
        if comma is None:
            break
        j += comma.end()
    return f"WITH {', '.join(done)} " if done else ""


def union_by_name(code: Code, text: str, describe: Callable[[str], Sequence[str]] | None) -> str:
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
        end = close(text, start) - 1
        left, right = text[start + 1 : m.start()], text[m.end() : end]
        if "UNION" in right:
            raise ValueError("UNION ALL BY NAME of more than two branches is not rendered")
        ctes = _ctes_before(text, start)
        lcols = list(describe(code.restore(f"{ctes}SELECT * FROM ({left}) LIMIT 0")))
        rcols = list(describe(code.restore(f"{ctes}SELECT * FROM ({right}) LIMIT 0")))
        if sorted(lcols) != sorted(rcols) or len(set(lcols)) != len(lcols):
            raise ValueError(f"UNION ALL BY NAME of {lcols} and {rcols} is not rendered")
        names = ", ".join(bq(c) for c in lcols)
        text = f"{text[: m.start()]}UNION ALL SELECT {names} FROM ({right.strip()}) {text[end:]}"
    return text


def param(code: Code, params: Mapping[str, Any], name: str) -> str:
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


def strftime(code: Code, args: list[str]) -> str:
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


def to_json(code: Code, args: list[str]) -> str:
    """``to_json(x)`` -> Spark's with NULL fields kept and instants written as DuckDB writes
    a TIMESTAMPTZ in UTC (``2026-04-01 00:00:00+00``, a fraction only when non-zero)."""
    _one("to_json", args, 1)
    options = ", ".join(
        code.lit(v) for v in ("timestampFormat", JSON_TIMESTAMP, "ignoreNullFields", "false")
    )
    pattern, replacement = (code.lit(v) for v in _JSON_FRACTION)
    # TO_JSON: the same function (names are case-insensitive), not rendered again
    return f"regexp_replace(TO_JSON({args[0]}, map({options})), {pattern}, {replacement})"


def qualify(code: Code, text: str, columns: Callable[[str], Sequence[str]] | None) -> str:
    m = _QUALIFY.match(text)
    if m is None:
        raise ValueError(f"QUALIFY of an unsupported shape: {code.restore(text)[:80]!r}")
    cols, rel = m["cols"], m["rel"]
    if cols == "*":
        if columns is None:
            raise ValueError(f"SELECT * ... QUALIFY needs the columns of {code.restore(rel)}")
        cols = ", ".join(bq(c) for c in columns(code.restore(rel).strip("`")))
    return (
        f"{m['head']}SELECT {cols} FROM (SELECT *, {m['win']} AS _qualify FROM {rel}) "
        "WHERE _qualify = 1"
    )


CALLS: tuple[tuple[str, Rewrite], ...] = (
    ("string_agg", _string_agg),
    ("list", _list),
    ("list_contains", _list_contains),
    ("struct_pack", _struct_pack),
    ("epoch_ms", _epoch_ms),
    ("timezone", _timezone),
    ("generate_series", _generate_series),
    ("range", _range),
    ("unnest", _unnest),
)
"""The call rewrites ``render_sql`` applies, in order (``strftime`` and ``to_json`` need the
statement's literals and are applied after these)."""
