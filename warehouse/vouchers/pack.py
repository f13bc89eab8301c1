"""Signed audit packs: one audit month frozen at the lake table versions it read
(docs/audit-packs.md).

``sign(lake, out, month=...)`` runs the audit once and writes the pack: the findings exactly as
``gpuledger audit --format json|csv|table|html`` prints them, the lineage, a copy of the
thresholds, the evidence rows as Parquet and ``manifest.json`` with the SHA-256 of every file
(optionally an HMAC-SHA256 of the manifest with the key in ``$GPULEDGER_AUDIT_KEY``).
``verify(pack)`` checks every hash, then re-runs the audit at the recorded versions with the
pack's thresholds and compares every file byte for byte. Every derived file is a function of the
snapshot, the thresholds and the manifest's fields alone; the signing time is the only instant
not read from the lake, and it lives in the manifest (the HTML page shows it as its
"generated" time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.defaults import DEFAULT_TZ
from pipeline.errors import TerminalError
from pipeline.lake import AsOf
from warehouse.catalog import load_sql
from warehouse.reports.render import duckdb_engine, name_engine
from warehouse.reports.utilisation import single_threaded
from warehouse.vouchers.audit import DEFAULT_THRESHOLDS, audit, parse_thresholds
from warehouse.vouchers.audit_format import format_audit, open_snapshot

PACK_FORMAT = "gpuledger-audit-pack/1"
MANIFEST = "manifest.json"
THRESHOLDS = "thresholds.toml"
KEY_ENV = "GPULEDGER_AUDIT_KEY"
REGISTRY = Path("_audit") / "packs"
"""Packs registered in a lake: ``<lake>/_audit/packs/<month>/<scope>/`` (scope: the programme
id, or ``all``), read by the exporter's restatement gauge."""
REPORTS = {"findings.json": "json", "findings.csv": "csv", "findings.txt": "table"}
EVIDENCE = {
    "evidence/claims.parquet": "audit_evidence_claims",
    "evidence/allocations.parquet": "audit_evidence_allocations",
    "evidence/gpu_hours.parquet": "audit_evidence_gpu_hours",
}


class PackError(TerminalError, RuntimeError):
    """The pack cannot be written or read (exists already, no manifest, tampered files)."""


@dataclass(frozen=True)
class Derived:
    """The files of a pack (name -> bytes) and the audit they came from."""

    files: dict[str, bytes]
    report: dict[str, Any]


@dataclass
class Verification:
    """What ``verify`` found: ``problems`` (empty when every figure matches) and ``checked``."""

    pack: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parquet(con: duckdb.DuckDBPyConnection, sql: str, ids: list[str]) -> bytes:
    table = con.execute(load_sql(sql), {"ids": ids}).to_arrow_table()
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def _cited(report: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(every claim the pack keeps: the month's and those a finding cites; the claims whose
    allocations and samples are evidence: the findings' and those they cite)."""
    cited = set()
    for f in report["findings"]:
        ev = f["evidence"]
        cited.update([f["claim_id"], *ev.get("claim_ids", []), *ev.get("earlier_claim_ids", [])])
    month = {f["claim_id"] for f in report["findings"]} | set(report["clean"])
    return sorted(month | cited), sorted(cited)


def derive(
    con: duckdb.DuckDBPyConnection,
    *,
    month: str,
    programme: str | None,
    tz: str,
    thresholds: bytes,
    signed_at: datetime,
) -> Derived:
    """Every file of the pack (but the manifest) from the snapshot ``con`` reads."""
    from warehouse.html import audit_html

    report = audit(
        con,
        month=month,
        programme=programme,
        tz=tz,
        thresholds=parse_thresholds(thresholds, THRESHOLDS),
    )
    name_engine(report, duckdb_engine())
    files = {name: format_audit(report, fmt).encode() for name, fmt in REPORTS.items()}
    files["findings.html"] = audit_html(report, generated_at=signed_at).encode()
    lineage = {"lineage": report["lineage"], "engine": report["engine"]}
    files["lineage.json"] = (json.dumps(lineage, indent=2, sort_keys=True) + "\n").encode()
    files[THRESHOLDS] = thresholds
    kept, cited = _cited(report)
    with single_threaded(con):
        for name, sql in EVIDENCE.items():
            files[name] = _parquet(con, sql, kept if name.endswith("claims.parquet") else cited)
    return Derived(files, report)


def _hmac(manifest: Mapping[str, Any], key: str) -> str:
    body = {k: v for k, v in manifest.items() if k != "hmac_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def _manifest(
    lake: Path, derived: Derived, month: str, programme: str | None, tz: str, signed_at: datetime
) -> dict[str, Any]:
    lineage = derived.report["lineage"]
    manifest: dict[str, Any] = {
        "format": PACK_FORMAT,
        "gpuledger_version": _version(),
        "month": month,
        "tz": tz,
        "programme": programme,
        "lake": str(Path(lake).resolve()),
        "tables": lineage["tables"],
        "as_of": lineage["as_of"],
        "engine": derived.report["engine"],
        "signed_at": signed_at.isoformat().replace("+00:00", "Z"),
        "files": {
            name: {"sha256": sha256(data), "bytes": len(data)}
            for name, data in sorted(derived.files.items())
        },
    }
    key = os.environ.get(KEY_ENV)
    if key:
        manifest["hmac_sha256"] = _hmac(manifest, key)
    return manifest


def _write_dir(folder: Path, files: Mapping[str, bytes]) -> None:
    """``files`` into a fresh ``folder``, written beside it first and renamed into place."""
    if folder.exists() and any(folder.iterdir()):
        raise PackError(f"{folder} exists and is not empty: sign into a new folder")
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    if folder.exists():
        folder.rmdir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, folder)


def sign(
    lake: Path,
    out: Path,
    *,
    month: str,
    programme: str | None = None,
    tz: str = DEFAULT_TZ,
    thresholds: Path | None = None,
    as_of: AsOf = None,
    register: bool = False,
) -> dict[str, Any]:
    """Write the pack of ``month`` (the lake's latest snapshot, or ``as_of``) to ``out`` (a new
    or empty folder); with ``register`` also to ``<lake>/_audit/packs/<month>/<scope>/``
    (replacing the pack registered there). Returns the manifest."""
    text = (DEFAULT_THRESHOLDS if thresholds is None else Path(thresholds)).read_bytes()
    signed_at = datetime.now(UTC).replace(microsecond=0)
    con = open_snapshot(lake, as_of)
    try:
        derived = derive(
            con, month=month, programme=programme, tz=tz, thresholds=text, signed_at=signed_at
        )
    finally:
        con.close()
    manifest = _manifest(lake, derived, month, programme, tz, signed_at)
    files = dict(derived.files)
    files[MANIFEST] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    _write_dir(Path(out), files)
    if register:
        register_pack(Path(out), lake)
    return manifest


def registered_path(lake: Path, month: str, programme: str | None) -> Path:
    return Path(lake) / REGISTRY / month / (programme or "all")


def register_pack(pack: Path, lake: Path) -> Path:
    """Copy a pack into the lake's registry (its hashes checked first); returns where."""
    manifest = read_manifest(pack)
    problems = check_files(pack, manifest)
    if problems:
        raise PackError(f"{pack}: not registered: " + "; ".join(problems))
    target = registered_path(lake, manifest["month"], manifest["programme"])
    if target.resolve() == Path(pack).resolve():
        return target
    files = {name: (pack / name).read_bytes() for name in [*manifest["files"], MANIFEST]}
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    _write_dir(target, files)
    shutil.rmtree(old, ignore_errors=True)
    return target


def registered_packs(lake: Path) -> list[Path]:
    """Every pack registered in ``lake``, by month and scope."""
    found = (Path(lake) / REGISTRY).glob("*/*/" + MANIFEST)
    return sorted(p.parent for p in found if not p.parent.name.startswith("."))  # not in writing


def read_manifest(pack: Path) -> dict[str, Any]:
    path = Path(pack) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackError(f"{path}: not a readable audit pack manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise PackError(f"{path}: not a {PACK_FORMAT} manifest")
    return manifest


def check_files(pack: Path, manifest: Mapping[str, Any]) -> list[str]:
    """The files whose bytes do not hash to the manifest's SHA-256, are missing or unlisted."""
    problems = []
    for name, entry in sorted(manifest["files"].items()):
        path = Path(pack) / name
        if not path.is_file():
            problems.append(f"{name}: missing from the pack")
            continue
        digest = sha256(path.read_bytes())
        if digest != entry["sha256"]:
            problems.append(
                f"{name}: SHA-256 {digest} does not match the manifest's {entry['sha256']} "
                "(changed after signing)"
            )
    listed = {*manifest["files"], MANIFEST}
    for path in sorted(p for p in Path(pack).rglob("*") if p.is_file()):
        name = path.relative_to(pack).as_posix()
        if name not in listed:
            problems.append(f"{name}: in the pack but not in the manifest")
    return problems


def _check_hmac(manifest: Mapping[str, Any]) -> list[str]:
    key = os.environ.get(KEY_ENV)
    if "hmac_sha256" not in manifest:
        return []
    if not key:
        return [f"{MANIFEST}: carries an HMAC but ${KEY_ENV} is not set to check it"]
    if not hmac.compare_digest(_hmac(manifest, key), str(manifest["hmac_sha256"])):
        return [f"{MANIFEST}: HMAC does not match (manifest changed, or another key)"]
    return []


def _difference(name: str, have: bytes, want: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(have, want, strict=False)) if x != y), None)
    at = min(len(have), len(want)) if at is None else at
    line = have[:at].count(b"\n") + 1
    return (
        f"{name}: the audit re-run at the recorded versions gives different bytes "
        f"(first difference at byte {at}, line {line}; {len(want)} bytes re-derived, "
        f"{len(have)} in the pack)"
    )


def _missing_tables(lake: Path, tables: Mapping[str, int]) -> list[str]:
    """The tables the pack read data from (version above 0) that ``lake`` does not hold."""
    from deltalake import DeltaTable

    from warehouse.catalog import table_paths

    paths = table_paths(Path(lake))
    return sorted(
        t
        for t, v in tables.items()
        if v and (t not in paths or not DeltaTable.is_deltatable(str(paths[t])))
    )


def _rederive(pack: Path, manifest: Mapping[str, Any], lake: Path) -> Derived | str:
    """The pack's files re-derived from ``lake`` at the recorded versions, or what failed."""
    try:
        thresholds = (pack / THRESHOLDS).read_bytes()
        con = open_snapshot(lake, dict(manifest["tables"]))
    except Exception as exc:
        return f"cannot read {lake} at the recorded versions: {exc}"
    try:
        signed_at = datetime.fromisoformat(manifest["signed_at"].replace("Z", "+00:00"))
        return derive(
            con,
            month=manifest["month"],
            programme=manifest["programme"],
            tz=manifest["tz"],
            thresholds=thresholds,
            signed_at=signed_at,
        )
    except Exception as exc:
        return f"the audit could not be re-run at the recorded versions: {exc}"
    finally:
        con.close()


def _compare(
    pack: Path, manifest: Mapping[str, Any], derived: Derived, result: Verification
) -> None:
    if derived.report["lineage"]["tables"] != manifest["tables"]:
        result.problems.append(f"{MANIFEST}: the re-run read other table versions")
    if derived.report["engine"] != manifest["engine"]:
        result.problems.append(
            f"engine {derived.report['engine']} differs from the signing engine "
            f"{manifest['engine']}: figures may differ in their last digits"
        )
    for name in sorted(set(derived.files) | set(manifest["files"])):
        want = derived.files.get(name)
        path = pack / name
        if want is None:
            result.problems.append(f"{name}: listed in the manifest but not a pack file")
        elif not path.is_file():
            continue  # named by check_files
        elif path.read_bytes() != want:
            result.problems.append(_difference(name, path.read_bytes(), want))
        elif manifest["files"].get(name, {}).get("sha256") == sha256(want):
            result.checked.append(name)


def verify(pack: Path, lake: Path | None = None) -> Verification:
    """Check ``pack``: manifest hashes (and HMAC), then every file re-derived from the lake
    (the manifest's, or ``lake``) at the recorded table versions with the pack's thresholds."""
    pack = Path(pack)
    result = Verification(pack)
    manifest = read_manifest(pack)
    result.problems += _check_hmac(manifest)
    result.problems += check_files(pack, manifest)
    lake = Path(manifest["lake"]) if lake is None else Path(lake)
    missing = _missing_tables(lake, manifest["tables"])
    if missing:
        result.problems.append(f"{lake} has no table {', '.join(missing)} that the pack read")
        return result
    derived = _rederive(pack, manifest, lake)
    if isinstance(derived, str):
        result.problems.append(derived)
    else:
        _compare(pack, manifest, derived, result)
    return result


def _version() -> str:
    """The installed gpuledger's version (the package metadata; "unknown" outside an install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpuledger")
    except PackageNotFoundError:
        return "unknown"
