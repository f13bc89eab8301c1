"""DuckDB statements of this project rendered for Spark SQL 4.0: ``render_sql`` (any statement,
with its ``$name`` parameters), ``spark_sql`` (a view statement; its docstring lists every
substitution) and ``materialized_ctes`` (the CTEs DuckDB materialises, for ``spark_reports`` to
compute once). The SQL stays written once, for DuckDB; docs/spark.md has the portability rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from warehouse.spark import sql_rewrites as rw
from warehouse.spark.sql_code import Code, close

_SUBSTITUTIONS = [
    (re.compile(r"\bCREATE OR REPLACE VIEW\b"), "CREATE OR REPLACE TEMP VIEW"),
    (re.compile(r"\bAS MATERIALIZED \("), "AS ("),
    (re.compile(r"\bVARCHAR\b"), "STRING"),
    (re.compile(r"\s*//\s*"), " div "),
    (re.compile(r"(?<![\w.\x01\x02])(\d+\.\d+)(?![\w.])"), r"\1D"),
    (re.compile(r"\[\s*\]"), "array()"),
    (re.compile(r"(?<![\w\])\x01\x02])\[([^\[\]]+)\]"), r"array(\1)"),
    (re.compile(r"\barg_max\("), "max_by("),
    (re.compile(r"\bmake_timestamptz\("), "timestamp_micros("),
    (re.compile(r"\blen\("), "array_size("),
]


def materialized_ctes(sql: str) -> tuple[list[tuple[str, str]], str] | None:
    """A ``WITH`` statement with CTEs DuckDB materialises (``name AS MATERIALIZED (...)``)
    split into one DuckDB query per such CTE, in order (each may read the ones before it by
    name, and is given the plain CTEs before it), and the statement without them; None when
    it has none. Spark has no such CTE: ``spark_reports`` computes each once."""
    code = Code(sql)
    text = code.code
    head = re.match(r"WITH\s+", text)
    if head is None or not re.search(r"\bAS MATERIALIZED \(", text):
        return None
    plain: list[str] = []
    out: list[tuple[str, str]] = []
    j = head.end()
    while cte := re.match(r"\s*(\w+)\s+AS\s+(MATERIALIZED\s+)?\(", text[j:]):
        start = j + cte.end() - 1
        end = close(text, start)
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
    code = Code(sql)
    text = code.code
    if params is not None or "$" in text:
        text = re.sub(r"\$(\w+)", lambda m: rw.param(code, params or {}, m[1]), text)
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    text = rw.semi_anti(text)
    for name, render in rw.CALLS:
        text = rw.calls(text, name, render)
    text = rw.calls(text, "strftime", lambda a, _: (rw.strftime(code, a), 0))
    text = rw.calls(text, "to_json", lambda a, _: (rw.to_json(code, a), 0))
    text = rw.count_distinct_over(text)
    text = rw.union_by_name(code, text, describe)
    text = rw.order_nulls_last(text)
    if "QUALIFY" in text:
        text = rw.qualify(code, text, columns)
    return code.restore(text)


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
      ``[]`` -> ``array()``, a list literal ``[a, b]`` -> ``array(a, b)`` (not an index
      ``l[1]``: no name, ``]`` or ``)`` before the ``[``);
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
