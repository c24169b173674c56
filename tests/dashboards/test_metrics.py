"""The dashboard's request metrics: labelled by route template, never by the raw URL."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.pipeline.metrics import DashboardMetrics


def test_requests_are_counted_by_route_template_and_status_code(
    engine: Engine, make_client: Callable[..., TestClient]
) -> None:
    metrics = DashboardMetrics()
    client = make_client(  # signs in: GET and POST /login are counted too
        engine, on_request=lambda route, code, seconds: metrics.request(route=route, code=code, seconds=seconds)
    )
    assert client.get("/api/brand-share?since=2026-11-01").status_code == 200
    assert client.get("/api/brand-share?since=2026-11-02").status_code == 200
    assert client.get("/api/brand-share?since=not-a-date").status_code == 422
    assert client.get("/no/such/page/123").status_code == 404
    r = metrics.registry
    assert r.get_sample_value("carspot_dashboard_requests_total", {"route": "/api/brand-share", "code": "200"}) == 2
    assert r.get_sample_value("carspot_dashboard_requests_total", {"route": "/api/brand-share", "code": "422"}) == 1
    assert r.get_sample_value("carspot_dashboard_requests_total", {"route": "unmatched", "code": "404"}) == 1
    assert r.get_sample_value("carspot_dashboard_request_duration_seconds_count", {"route": "/api/brand-share"}) == 3
    routes = {s.labels["route"] for f in r.collect() for s in f.samples if "route" in s.labels}
    assert routes == {"/api/brand-share", "unmatched", "/login"}  # no query strings, no raw paths
