"""Fixtures for tests against the real local Kafka broker.

One broker serves the session: the one named by ``GPULEDGER_TEST_KAFKA`` (``.ci/run`` starts it
with ``gpuledger kafka start``), else one this fixture starts on free ports in a temp folder.
Each test gets its own topic namespace and consumer group, so tests never see each other's data.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuledger import broker
from pipeline.dead_letter import DeadLetter
from pipeline.dead_letter import read_dead_letters as dead_letters
from pipeline.lake import open_table
from pipeline.records import BY_TABLE
from pipeline.topics import ensure_topics
from warehouse.catalog import connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_settings(data_dir: Path) -> broker.BrokerSettings:
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    return broker.BrokerSettings(port=port, controller_port=controller, data_dir=data_dir)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("GPULEDGER_TEST_KAFKA")
    if given:
        broker.wait_until_answers(given, 60)
        yield given
        return
    settings = broker_settings(tmp_path_factory.mktemp("kafka"))
    bootstrap = broker.start(settings)
    yield bootstrap
    broker.stop(settings)


@pytest.fixture
def namespace(kafka: str) -> str:
    ns = f"t{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka, ns, partitions=2)
    return ns


def lake_rows(lake: Path, table: str) -> list[tuple]:
    """Every stored row of a lake table (its Delta snapshot: raw, not deduplicated), in the
    contract's column order; ``_loads`` from the warehouse view."""
    if table == "_loads":
        con = connect(lake, ":memory:")
        return con.execute("SELECT load_id, origin, kind, table_name, rows FROM _loads").fetchall()
    k = BY_TABLE[table]
    dt = open_table(lake / table)
    if dt is None:
        return []
    data = dt.to_pyarrow_table(columns=list(k.names))
    return list(zip(*(data.column(n).to_pylist() for n in k.names), strict=True))


def read_dead_letters(bootstrap: str, topic: str, expect: int) -> list[DeadLetter]:
    letters = dead_letters(bootstrap, topic, idle_timeout_s=10)
    assert len(letters) == expect, letters
    return letters
