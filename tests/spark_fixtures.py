"""One local Spark session (Delta configured) for the whole test run.

Import the fixture into a test module (``from tests.spark_fixtures import spark_fixture``);
tests that use ``spark`` skip, with the reason, only when no Java runtime is on the PATH.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", name="spark")
def spark_fixture() -> Iterator[Any]:
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (17): no `java` on the PATH")
    from warehouse.spark.catalog import spark_session

    session = spark_session()
    yield session
    session.stop()
