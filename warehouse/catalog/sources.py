"""The catalogue's SQL building blocks: the warehouse's SQL files, FROM clauses over a Delta
snapshot's active files, typed selects. The views (``warehouse.catalog``), the rollup views
(``warehouse.catalog.rollups``) and the entity views (``warehouse.catalog.entities``) are built
from them."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable

from deltalake import DeltaTable

from pipeline import lake as lakes
from pipeline.sqltext import ident, sql_literal

LEDGER_SNAPSHOT = "voucher_imports"
"""The snapshot name of the voucher import ledger (``pipeline.ledger``)."""

SQL_HOMES = ("catalog/sql", "reports/sql", "vouchers/sql", "ops/sql")


@functools.cache
def _sql_files() -> dict[str, Traversable]:
    """Every ``.sql`` file of the warehouse by name: each subpackage keeps its own ``sql/``
    folder, and names are unique across them."""
    found: dict[str, Traversable] = {}
    root = resources.files("warehouse")
    for home in SQL_HOMES:
        for entry in root.joinpath(*home.split("/")).iterdir():
            if entry.name.endswith(".sql"):
                name = entry.name.removesuffix(".sql")
                if name in found:
                    raise RuntimeError(f"two warehouse SQL files are named {entry.name}")
                found[name] = entry
    return found


def load_sql(name: str) -> str:
    """The text of the warehouse's ``<name>.sql`` (the catalogue's or a subpackage's ``sql/``),
    its template uses expanded (``expand_sql``)."""
    try:
        entry = _sql_files()[name]
    except KeyError:
        raise KeyError(f"no warehouse SQL file {name}.sql") from None
    return expand_sql(entry.read_text(encoding="utf-8"), name)


_USE = re.compile(r"^(?P<indent>[ \t]*)/\*(?P<name>\w+)[ \t]*\n(?P<body>.*?)\*/", re.M | re.S)
_SLOT = re.compile(r"/\*(\w+)\*/")
_PARAM = re.compile(r"(\w+):(?:\s+(.*))?")


def expand_sql(text: str, where: str = "SQL") -> str:
    """``text`` with each use of a template replaced by the template filled in.

    A use stands on lines of its own: ``/*<template>`` (a SQL file of the warehouse), one
    ``<slot>: <SQL>`` line per slot of the template (a line without ``name:`` continues the
    one before it), ``*/``. The template's ``/*<slot>*/`` are replaced by that SQL, exactly;
    its header comment lines and final ``;`` are left out, its lines indented as the use.
    Every slot must be given, and nothing else: a use that does not fit raises ValueError."""
    return _USE.sub(lambda m: _fill(m["name"], _params(m["body"], where), m["indent"], where), text)


def _params(body: str, where: str) -> dict[str, str]:
    params: dict[str, list[str]] = {}
    key = None
    for line in body.splitlines():
        if not line.strip():
            continue
        m = _PARAM.fullmatch(line.strip())
        if m is not None:
            key = m[1]
            if key in params:
                raise ValueError(f"{where}: slot {key} given twice")
            params[key] = [m[2] or ""]
        elif key is None:
            raise ValueError(f"{where}: a template use must start with '<slot>: ', not {line!r}")
        else:
            params[key].append(line.strip())
    return {k: " ".join(v for v in lines if v) for k, lines in params.items()}


def _fill(name: str, params: dict[str, str], indent: str, where: str) -> str:
    lines = load_sql(name).strip().removesuffix(";").splitlines()
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    body = "\n".join(lines)
    slots = set(_SLOT.findall(body))
    if slots != set(params):
        raise ValueError(
            f"{where}: template {name}.sql has slots {', '.join(sorted(slots)) or 'none'}, "
            f"given {', '.join(sorted(params)) or 'none'}"
        )
    filled = _SLOT.sub(lambda m: params[m[1]], body)
    return "\n".join(indent + line if line else line for line in filled.split("\n"))


def select_typed(columns: list[tuple[str, str]], source: str | None, provenance: bool) -> str:
    """SELECT of exactly ``columns`` (and the lake's ``_version``, ``_load``, ``_file``,
    ``_row`` with ``provenance``) from ``source``; zero typed rows when there is no source."""
    if source is None:
        cols = [f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in columns]
        if provenance:
            cols += [
                "CAST(NULL AS BIGINT) AS _version",
                "CAST(NULL AS VARCHAR) AS _load",
                "CAST(NULL AS VARCHAR) AS _file",
                "CAST(NULL AS BIGINT) AS _row",
            ]
        return f"SELECT {', '.join(cols)} WHERE false"
    cols = [f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in columns]
    if provenance:
        cols += ["_version", "_load", "filename AS _file", "file_row_number AS _row"]
    return f"SELECT {', '.join(cols)} FROM {source}"


def delta_source(dt: DeltaTable | None, partition_columns: Sequence[str] = ()) -> str | None:
    """A FROM clause over the snapshot's active files, with ``filename`` / ``file_row_number``
    and the partition columns taken from the log; None when the snapshot has no file."""
    # sorted: the same snapshot always lists (and so sums) its files in the same order
    return files_source([] if dt is None else sorted(lakes.active_files(dt)), partition_columns)


def files_source(
    files: Sequence[tuple[str, Mapping[str, str | None]]], partition_columns: Sequence[str] = ()
) -> str | None:
    """A FROM clause over ``files`` ((path, partition values) from a Delta log), as
    ``delta_source``; None when there is no file."""
    if not files:
        return None
    paths = ", ".join(sql_literal(p) for p, _ in files)
    scan = (
        f"read_parquet([{paths}], filename = true, file_row_number = true, "
        "hive_partitioning = false)"
    )
    if not partition_columns:
        return scan
    rows = ", ".join(
        "("
        + ", ".join([sql_literal(p)] + [_literal_or_null(v.get(c)) for c in partition_columns])
        + ")"
        for p, v in files
    )
    names = ", ".join(["_path", *(ident(c) for c in partition_columns)])
    return f"{scan} AS r JOIN (VALUES {rows}) AS f({names}) ON r.filename = f._path"


def _literal_or_null(value: str | None) -> str:
    return "NULL" if value is None else sql_literal(value)
