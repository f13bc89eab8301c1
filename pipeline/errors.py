"""The two kinds of project error, decided by type.

- ``TerminalError``: retrying cannot help. Bad input (a record, a file, a hostlist), bad
  configuration (a Kafka client properties file), a refused import or query. A bad record goes
  to the dead-letter path; a bad file or setting stops the command with a message.
- ``TransientError``: retrying may help. The broker is unreachable, a source is down, another
  writer committed first. Nothing of the attempt is kept; the caller (or the operator) runs it
  again.

Every project exception derives from one of the two (and keeps the built-in base, such as
``ValueError``, that callers catch it by). The command line turns both into one line on stderr
and an exit code (``gpuledger.cli.EXIT_CODES``).
"""

from __future__ import annotations


class GpuledgerError(Exception):
    """Any error this project raises on purpose."""


class TerminalError(GpuledgerError):
    """The input or the settings are wrong: the same attempt fails the same way again."""


class TransientError(GpuledgerError):
    """Something outside was away or moved meanwhile: the same attempt may succeed later."""
