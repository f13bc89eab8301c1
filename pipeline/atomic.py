"""Files put in place whole: written under a temporary name beside the target, flushed to disk,
then renamed over it (``os.replace``) and the folder synced. A reader sees the old file or the
new one, never a part of one; a crash leaves at most a hidden ``.<name>.<pid>.tmp`` behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A file written as it goes (``fh``) and put in place at ``commit`` (``abort``: nothing
    changes). As a context manager it commits when the block ends without an exception.

    ``private``: readable by the owner only (keys, passwords), from the first byte on."""

    def __init__(self, path: Path, *, binary: bool = False, private: bool = False) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        if private:
            os.chmod(self.tmp, 0o600)
        self.fh: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")

    def commit(self) -> Path:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_atomic(
    path: Path,
    data: str | bytes | Callable[[IO[str]], object],
    *,
    private: bool = False,
) -> Path:
    """Put ``data`` (text as UTF-8, bytes as they are, or what a callback writes to a text
    handle) in ``path`` atomically and durably; returns ``path``."""
    with AtomicFile(path, binary=isinstance(data, bytes), private=private) as f:
        if isinstance(data, str | bytes):
            f.fh.write(data)
        else:
            data(f.fh)
    return f.path
