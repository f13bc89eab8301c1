"""Running a source's command-line client (sacct, scontrol, nvidia-smi) as the I/O seam."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

from collectors.errors import SourceError

Runner = Callable[[Sequence[str]], str]
"""The ``run=`` seam of command collectors: argv in, stdout out, ``SourceError`` on failure."""


def run_command(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    hint: str = "",
) -> str:
    """Run ``argv``; a missing binary, a non-zero exit or a timeout raises ``SourceError``
    naming the command (``hint`` is added to the not-found message)."""
    name = argv[0]
    try:
        done = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise SourceError(f"{name}: not found on this host{hint} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"{name}: no answer within {timeout_s:g} s") from exc
    except OSError as exc:
        raise SourceError(f"{name}: {type(exc).__name__}: {exc}") from exc
    if done.returncode != 0:
        # Slurm clients report on stderr, nvidia-smi on stdout.
        message = (done.stderr.strip() or done.stdout.strip())[:300]
        raise SourceError(f"{name}: exit status {done.returncode}: {message}")
    return done.stdout
