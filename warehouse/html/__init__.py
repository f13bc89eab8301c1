"""Self-contained HTML reports: inline CSS and SVG charts drawn in Python, nothing fetched at
view time (the machines that read them may have no internet)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.atomic import write_atomic
from warehouse.html.audit import audit_html
from warehouse.html.statement import statement_html
from warehouse.html.utilisation import utilisation_html
from warehouse.reports.render import Lineage

__all__ = [
    "audit_html",
    "statement_html",
    "utilisation_html",
    "write_audit_html",
    "write_html",
    "write_statement_html",
    "write_utilisation_html",
]


def write_html(text: str, path: Path) -> Path:
    """Write a page atomically (``pipeline.atomic.write_atomic``), its folder made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text)


def write_utilisation_html(
    rows: Sequence[dict[str, Any]], path: Path, title: str = "", lineage: Lineage | None = None
) -> Path:
    page = (
        utilisation_html(rows, title, lineage=lineage)
        if title
        else utilisation_html(rows, lineage=lineage)
    )
    return write_html(page, path)


def write_audit_html(report: dict[str, Any], path: Path) -> Path:
    return write_html(audit_html(report), path)


def write_statement_html(st: dict[str, Any], path: Path) -> Path:
    return write_html(statement_html(st), path)
