"""The operator files the package ships in ``gpuledger/deploy/`` and their export.

The Prometheus rules and configs (``prometheus/``), the built-in alerts' default rules
(``alerts/``), the Grafana dashboards and provisioning (``grafana/``), the broker recipe
(``kafka/``) and the audit thresholds (``audit/``) are package data, found with
importlib.resources, so an installed wheel has them without the checkout. ``export`` copies them
byte for byte into a folder (``gpuledger deploy export``).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from pipeline.errors import TerminalError

PARTS = ("prometheus", "alerts", "grafana", "kafka", "audit")
"""The folders of ``gpuledger/deploy/``, in the order they are exported."""


class ExportRefused(TerminalError):
    """The export would overwrite files and was not forced; nothing was written."""


def package_deploy() -> Traversable:
    """``gpuledger/deploy/`` of the installed package."""
    return resources.files("gpuledger") / "deploy"


def deploy_files(parts: Iterable[str] = PARTS) -> list[tuple[PurePosixPath, Traversable]]:
    """Every file of the given parts: (path relative to ``gpuledger/deploy/``, the file), sorted
    by name within each part."""
    found: list[tuple[PurePosixPath, Traversable]] = []

    def walk(node: Traversable, rel: PurePosixPath) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__" or child.name.startswith("."):
                continue
            if child.is_dir():
                walk(child, rel / child.name)
            elif child.is_file():
                found.append((rel / child.name, child))

    root = package_deploy()
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"unknown deploy part {part!r} (known: {', '.join(PARTS)})")
        node = root / part
        if not node.is_dir():
            raise TerminalError(f"the package has no deploy/{part}/ (a broken installation?)")
        walk(node, PurePosixPath(part))
    return found


def export(out: Path, parts: Iterable[str] = PARTS, force: bool = False) -> list[Path]:
    """Write the files of ``parts`` under ``out`` (``out/prometheus/rules.yml``, ...), creating
    folders as needed; return the paths written. Without ``force``, refuse (``ExportRefused``,
    nothing written) when any of them exists; with it, overwrite them. Other files in ``out``
    are left alone."""
    targets = [(out.joinpath(*rel.parts), src) for rel, src in deploy_files(parts)]
    if not force:
        existing = [t for t, _ in targets if t.exists() or t.is_symlink()]
        if existing:
            shown = ", ".join(str(p) for p in existing[:5])
            more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
            raise ExportRefused(
                f"{len(existing)} of the files exist already ({shown}{more}); nothing was "
                "written; pass --force to overwrite them"
            )
    written = []
    for target, src in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():  # replace the link, never write through it
            target.unlink()
        target.write_bytes(src.read_bytes())
        written.append(target)
    return written
