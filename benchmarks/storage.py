"""Bytes per GPU sample of the demo's DCGM stream after compaction, and how far it could go.

Loads the shipped DCGM stream (``gpuledger/data/dcgm/earth-sim-2020-05.prom.gz``, or
``--file``) with the project's own commands into a fresh lake, in their own processes:

1. ``gpuledger backfill --lake L replay dcgm-file --file F``;
2. ``gpuledger lake compact --lake L --before 2100-01-01 --format json``.

Then reads the compacted ``gpu_samples`` files of the table's snapshot and prints:

- bytes per sample before and after compaction (every active file's size);
- where they go: each column's compressed chunks, the footers, the page indexes;
- for each measurement column, its size in the lake beside the same values as scaled
  integers (``round(x * 10**e)`` for the smallest ``e`` that gives every value back exactly:
  lossless), each alone in a file at zstd 19, PLAIN and DELTA_BINARY_PACKED, and the
  zero-order entropy of those integers and of their first differences per GPU (an ideal
  coder's bound);
- the floor that follows: the best measured integer coding of the measurement columns plus the
  other columns, footers and indexes as they are.

Not a test. ``--keep DIR`` keeps the lake in DIR (which must not exist).

    .venv/bin/python benchmarks/storage.py [--file F] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "gpuledger/data/dcgm/earth-sim-2020-05.prom.gz"
MEASURES = ("util", "power_w", "temp_c", "sm_active", "mem_used_bytes")
FLOATS = ("util", "power_w", "temp_c", "sm_active")
ZSTD = {"compression": "zstd", "compression_level": 19, "store_schema": False}


def gpuledger(*args: str) -> str:
    exe = Path(sys.executable).with_name("gpuledger")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"gpuledger {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def active_files(lake: Path) -> list[str]:
    from deltalake import DeltaTable

    return sorted(DeltaTable(str(lake / "gpu_samples")).file_uris())


def sizes(files: list[str]) -> tuple[int, int, dict[str, int], int, int]:
    """(rows, bytes, compressed bytes per column, footer bytes, other bytes: page indexes,
    magic)."""
    rows = total = footer = 0
    columns: dict[str, int] = {}
    for f in files:
        size = os.path.getsize(f)
        total += size
        with open(f, "rb") as fh:
            fh.seek(size - 8)
            footer += int.from_bytes(fh.read(4), "little") + 8
        meta = pq.read_metadata(f)
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                columns[col.path_in_schema] = (
                    columns.get(col.path_in_schema, 0) + col.total_compressed_size
                )
    return rows, total, columns, footer, total - footer - sum(columns.values())


def encoded(array: pa.Array, **kw: object) -> int:
    """Bytes of one column alone in a Parquet file at zstd 19 (its column chunk only)."""
    out = io.BytesIO()
    pq.write_table(pa.table({"x": array}), out, use_dictionary=False, **ZSTD, **kw)
    return pq.read_metadata(out).row_group(0).column(0).total_compressed_size


def scale_of(values: np.ndarray) -> int | None:
    """The smallest decimal exponent e (0..6) with every value == round(v * 10**e) / 10**e."""
    for e in range(7):
        k = np.round(values * 10.0**e)
        if np.array_equal(k / 10.0**e, values) and np.abs(k).max(initial=0) < 2**53:
            return e
    return None


def entropy_bytes(values: np.ndarray) -> float:
    """Zero-order entropy of integer ``values``, in bytes per value."""
    if not len(values):
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() / 8)


def first_differences(ints: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """Per GPU (rows sorted by GPU, then time), each value less the GPU's one before."""
    if not len(ints):
        return ints
    d = np.diff(ints, prepend=0)
    starts = np.r_[True, gpus[1:] != gpus[:-1]]
    d[starts] = ints[starts]
    return d


def per_column(files: list[str]) -> list[tuple[str, int, dict[str, float]]]:
    """For each measurement column: its rows with a value, and bytes of each coding."""
    table = pa.concat_tables([pq.read_table(f) for f in files])  # sorted by gpu_uuid, ts
    gpus = table.column("gpu_uuid").to_numpy(zero_copy_only=False)
    out = []
    for name in MEASURES:
        col = table.column(name).combine_chunks()
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        values = col.to_numpy(zero_copy_only=False)
        got: dict[str, float] = {}
        if name in FLOATS:
            e = scale_of(values[valid].astype(np.float64))
            if e is None:
                out.append((name, int(valid.sum()), got))
                continue
            ints = np.round(values.astype(np.float64) * 10.0**e)
            ints = np.where(valid, ints, 0).astype(np.int64)
            got["scale"] = float(e)
        else:
            ints = np.where(valid, values, 0).astype(np.int64)
        arr = pa.array(ints, mask=~valid)
        got["int64 PLAIN"] = encoded(arr, column_encoding="PLAIN")
        got["int64 DELTA"] = encoded(arr, column_encoding="DELTA_BINARY_PACKED")
        kept, their = ints[valid], gpus[valid]
        got["H(values)"] = entropy_bytes(kept) * len(kept)
        got["H(differences)"] = entropy_bytes(first_differences(kept, their)) * len(kept)
        out.append((name, int(valid.sum()), got))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEMO, help="a DCGM exposition file (.prom[.gz])")
    ap.add_argument("--keep", type=Path, help="keep the lake in this new folder")
    a = ap.parse_args()
    import deltalake
    import duckdb

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}, pyarrow {pa.__version__}, deltalake "
        f"{deltalake.__version__}, duckdb {duckdb.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        lake = a.keep or Path(tmp) / "lake"
        if lake.exists():
            raise SystemExit(f"{lake} exists; --keep takes a new folder")
        gpuledger("backfill", "--lake", str(lake), "replay", "dcgm-file", "--file", str(a.file))
        before = sum(os.path.getsize(f) for f in active_files(lake))
        json.loads(
            gpuledger(
                "lake", "compact", "--lake", str(lake), "--before", "2100-01-01", "--format", "json"
            )
        )
        files = active_files(lake)
        n, total, columns, footer, other = sizes(files)
        report(a.file, n, len(files), before, total, columns, footer, other, per_column(files))


def report(
    source: Path,
    n: int,
    nfiles: int,
    before: int,
    total: int,
    columns: dict[str, int],
    footer: int,
    other: int,
    codings: list[tuple[str, int, dict[str, float]]],
) -> None:
    print(f"stream: {source.name}: {n:,} samples, {nfiles} files after compaction")
    print(f"bytes per sample: {before / n:.2f} after backfill, {total / n:.2f} after compaction")
    print("where they go (bytes per sample):")
    for name, size in sorted(columns.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<16} {size / n:6.3f}")
    print(f"  {'footers':<16} {footer / n:6.3f}")
    print(f"  {'page indexes':<16} {other / n:6.3f}")
    keys = ("in the lake", "int64 PLAIN", "int64 DELTA", "H(values)", "H(differences)")
    print(
        "each measurement column, bytes per sample: in the lake; as integers of the lossless "
        "scale, alone at zstd 19 (PLAIN, DELTA_BINARY_PACKED); their entropy, and that of "
        "their first differences per GPU"
    )
    print(f"  {'column':<16} {'values':>8} {'scale':>5} " + " ".join(f"{k:>14}" for k in keys))
    best_ints = bound = 0.0
    for name, valid, got in codings:
        got["in the lake"] = columns.get(name, 0)
        scale = f"1e-{int(got['scale'])}" if "scale" in got and valid else ""
        cells = " ".join(f"{got[k] / n:>14.3f}" if k in got else f"{'':>14}" for k in keys)
        print(f"  {name:<16} {valid:>8,} {scale:>5} {cells}")
        ints = [got[k] for k in keys[1:3] if k in got]
        best_ints += min([got["in the lake"], *ints])
        held = got["in the lake"]
        bound += min(got.get("H(values)", held), got.get("H(differences)", held))
    rest = total - sum(columns[c] for c in MEASURES if c in columns)
    print(f"the other columns, footers and page indexes as they are: {rest / n:.3f}")
    print(
        f"floor with the best measured coding of the measurements: {(rest + best_ints) / n:.2f}"
        f" bytes per sample; with an ideal coder of their values: {(rest + bound) / n:.2f}"
    )


if __name__ == "__main__":
    main()
