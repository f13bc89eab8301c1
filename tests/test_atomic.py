"""``pipeline.atomic``: files put in place whole, or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.atomic import AtomicFile, write_atomic


def test_text_bytes_and_callback_are_written_whole(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert write_atomic(tmp_path / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    out = write_atomic(tmp_path / "c.json", lambda fh: fh.write('{"a": 1}'))
    assert out.read_text(encoding="utf-8") == '{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json"]


def test_a_rewrite_replaces_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, "old")
    write_atomic(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_private_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "client.properties", "sasl.password=x\n", private=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    write_atomic(path, "kept\n")
    with pytest.raises(RuntimeError), AtomicFile(path) as f:
        f.fh.write("half")
        raise RuntimeError("disk trouble")
    assert path.read_text(encoding="utf-8") == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["q.jsonl"]


def test_nothing_is_visible_before_commit(tmp_path: Path) -> None:
    path = tmp_path / "load.jsonl"
    f = AtomicFile(path)
    f.fh.write("line\n")
    assert not path.exists()
    assert f.commit() == path and path.read_text(encoding="utf-8") == "line\n"
