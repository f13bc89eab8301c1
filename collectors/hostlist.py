"""Slurm hostlist expressions: ``d09n04s[01-02],d13n[03,05,07-08]`` -> node names.

The syntax (``slurm_hostlist_*`` in Slurm's ``src/common/hostlist.c``): comma-separated items at
the top level; each item may hold one or more bracketed range lists ``[a-b,c,...]``; ranges keep
their zero padding (``[07-08]`` -> ``07``, ``08``); several brackets in one item give the
cartesian product (``r[1-2]n[1-2]`` -> ``r1n1 r1n2 r2n1 r2n2``).
"""

from __future__ import annotations

import itertools
import re

from pipeline.errors import TerminalError

MAX_HOSTS = 1_000_000
"""A guard against a malformed range such as ``[1-999999999]`` eating the memory."""

_BRACKET = re.compile(r"\[([^\[\]]*)\]")


class HostlistError(TerminalError, ValueError):
    """The text is not a hostlist expression."""


def split_top_level(text: str, sep: str = ",", opening: str = "[", closing: str = "]") -> list[str]:
    """Split ``text`` on ``sep`` outside brackets (``a[1,2],b`` -> ``a[1,2]``, ``b``)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced {closing!r} in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise HostlistError(f"unbalanced {opening!r} in {text!r}")
    parts.append("".join(current))
    return parts


def _range(spec: str, whole: str) -> list[str]:
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise HostlistError(f"bad range {part!r} in {whole!r}")
        if not dash:
            out.append(lo)
            continue
        a, b = int(lo), int(hi)
        if b < a:
            raise HostlistError(f"descending range {part!r} in {whole!r}")
        if b - a >= MAX_HOSTS:
            raise HostlistError(f"range {part!r} in {whole!r} is too large")
        width = len(lo)
        out.extend(str(i).zfill(width) for i in range(a, b + 1))
    return out


def expand_item(item: str) -> list[str]:
    """One top-level item (no top-level commas) -> its host names."""
    pieces = _BRACKET.split(item)
    # pieces alternate: literal, range spec, literal, range spec, ..., literal
    literals = pieces[0::2]
    if any("[" in lit or "]" in lit for lit in literals):
        raise HostlistError(f"unbalanced brackets in {item!r}")
    choices: list[list[str]] = []
    for i, lit in enumerate(literals):
        choices.append([lit])
        if 2 * i + 1 < len(pieces):
            choices.append(_range(pieces[2 * i + 1], item))
    return ["".join(combo) for combo in itertools.product(*choices)]


def expand(text: str) -> list[str]:
    """A hostlist expression -> node names, in order, duplicates kept as written.

    Empty text, ``None assigned`` and ``(null)`` (Slurm's words for "no nodes") give ``[]``.
    Raises ``HostlistError`` on malformed text.
    """
    text = text.strip()
    if not text or text in ("None assigned", "(null)", "None"):
        return []
    hosts: list[str] = []
    for item in split_top_level(text):
        item = item.strip()
        if not item:
            raise HostlistError(f"empty item in {text!r}")
        hosts.extend(expand_item(item))
        if len(hosts) > MAX_HOSTS:
            raise HostlistError(f"{text!r} names more than {MAX_HOSTS} hosts")
    return hosts
