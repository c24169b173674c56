"""Dates at the calendar's edge are the caller's mistake, answered 422 with a message, never 500
(issue 24, defect 10)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine


@pytest.mark.parametrize(
    "path",
    [
        "/api/daily?since=9999-12-31",
        "/api/daily?until=0001-01-01T05:00:00%2B14:00",
        "/api/brand-share?since=9999-12-31",
        "/api/brand-share?until=0001-01-01T05:00:00%2B14:00",
        "/reports/weekly.csv?week=9999-W52",
        "/reports/weekly.json?week=9999-W52",
    ],
)
def test_calendar_edges_are_422_with_a_message(
    engine: Engine, make_client: Callable[..., TestClient], path: str
) -> None:
    client = make_client(engine, raise_server_exceptions=False)
    response = client.get(path)
    assert response.status_code == 422, (path, response.status_code, response.text[:300])
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/daily?since=0001-01-01&until=0001-01-02",
        "/api/brand-share?since=9999-12-30T00:00:00Z&until=9999-12-31T23:59:59.999999Z",
        "/reports/weekly.csv?week=0001-W01",
        "/reports/weekly.csv?week=9999-W51",
    ],
)
def test_the_first_and_last_representable_windows_still_answer(
    engine: Engine, make_client: Callable[..., TestClient], path: str
) -> None:
    assert make_client(engine).get(path).status_code == 200
