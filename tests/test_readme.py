"""The README documents every command and report the CLI offers (and the two entry commands)."""

from __future__ import annotations

import argparse

from gpuledger.cli import build_parser
from tests.conftest import REPO


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                found.append(path)
                found.extend(_commands(sub, path))
    return found


def test_every_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    top = [c for c in _commands(build_parser()) if not c.startswith(("collect", "backfill"))]
    sources = {c.split(" ", 1)[1] for c in _commands(build_parser()) if c.startswith("collect ")}
    missing = [c for c in top if f"gpuledger {c}" not in readme]
    missing += [s for s in sources if f"`{s}" not in readme and f" {s} " not in readme]
    assert not missing, f"not in README.md: {missing}"


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert "./run demo" in readme and "./run tests" in readme
    assert "./run tests" in (REPO / ".ci" / "run").read_text()
