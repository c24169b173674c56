"""The fault suite (issue 24): hostile input and real outages on the REAL services, counted against what an
uninterrupted run gives. It uses the integration fixtures (each test its own topics, database and Redis prefix);
a missing service fails, never skips. The outage tests share one private stack (``stack``), started once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.stack import PrivateStack, start_stack
from tests.integration.conftest import isolated, services  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """Kafka, PostgreSQL and Redis of the suite's own, so stopping or killing one never touches the services
    others use; stopped, and its files removed, at the end."""
    data_dir = tmp_path_factory.mktemp("private-data")
    started = start_stack(data_dir / "services")
    try:
        yield started
    finally:
        started.stop()
