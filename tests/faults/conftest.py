"""The fault suite (issue 24): hostile input and real outages on the REAL services, counted against what an
uninterrupted run gives. It uses the integration fixtures (each test its own topics, database and Redis prefix);
a missing service fails, never skips."""

from __future__ import annotations

import pytest

from tests.integration.conftest import isolated, services  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration
