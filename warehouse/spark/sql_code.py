"""A DuckDB statement as text the Spark SQL rewrites can work on: ``Code`` replaces every string
literal and quoted identifier by a placeholder, so that rewrites never look inside them, and puts
them back in Spark's (or DuckDB's) syntax; the parenthesis and argument helpers the rewrites use.
"""

from __future__ import annotations

import re

TOKENS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\"(?:[^\"]|\"\")*\"|[^'\"-]+|-", re.DOTALL)
LIT = "\x01"
ID = "\x02"
PLACEHOLDER = re.compile(f"([{LIT}{ID}])(\\d+)[{LIT}{ID}]")
NAME = rf"(?:\w+\.)?(?:\w+|{ID}\d+{ID})"
"""A column reference: ``name``, ``alias.name`` or a quoted name (its placeholder)."""


def bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def spark_literal(text: str) -> str:
    """A DuckDB string literal's value as a Spark literal (Spark reads backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def close(text: str, i: int) -> int:
    """Index just past the parenthesis that closes the one at ``text[i]``."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    raise ValueError(f"unbalanced parentheses in {text[i:]!r}")


def split_args(text: str) -> list[str]:
    """The comma-separated arguments of a call (commas inside parentheses stay)."""
    out, depth, start = [], 0, 0
    for j, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:j])
            start = j + 1
    out.append(text[start:])
    return [a.strip() for a in out]


class Code:
    """A statement's code with every string literal and quoted identifier replaced by a
    placeholder (``\\x01n\\x01``, ``\\x02n\\x02``), so that rewrites never look inside them."""

    def __init__(self, sql: str) -> None:
        self.literals: list[str] = []
        self.names: list[str] = []
        parts = []
        for token in TOKENS.findall(sql.strip().removesuffix(";")):
            if token.startswith("'"):
                parts.append(self.lit(token[1:-1].replace("''", "'")))
            elif token.startswith('"'):
                self.names.append(token[1:-1].replace('""', '"'))
                parts.append(f"{ID}{len(self.names) - 1}{ID}")
            elif not token.startswith("--"):
                parts.append(token)
        self.code = "".join(parts).strip().removesuffix(";").strip()

    def lit(self, value: str) -> str:
        """A placeholder for the string literal ``value``."""
        self.literals.append(value)
        return f"{LIT}{len(self.literals) - 1}{LIT}"

    def value(self, text: str) -> str:
        """The value of the string literal whose placeholder is ``text``."""
        m = PLACEHOLDER.fullmatch(text.strip())
        if m is None or m[1] != LIT:
            raise ValueError(f"expected a string literal, not {text!r}")
        return self.literals[int(m[2])]

    def duck(self, code: str) -> str:
        """``code`` with the literals and names back in DuckDB's syntax."""

        def put(m: re.Match[str]) -> str:
            i = int(m[2])
            if m[1] == LIT:
                return "'" + self.literals[i].replace("'", "''") + "'"
            return '"' + self.names[i].replace('"', '""') + '"'

        return PLACEHOLDER.sub(put, code)

    def restore(self, code: str) -> str:
        """``code`` with the literals re-escaped for Spark and the names in backquotes."""

        def put(m: re.Match[str]) -> str:
            i = int(m[2])
            return spark_literal(self.literals[i]) if m[1] == LIT else bq(self.names[i])

        return PLACEHOLDER.sub(put, code)
