"""Quoting for SQL text that cannot take bound parameters (DuckDB's ``CREATE VIEW``, file
lists): string literals for trusted values such as file paths from a Delta log, and quoted
identifiers from the contract."""

from __future__ import annotations


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal (single quotes doubled); for trusted paths only."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot appear in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
