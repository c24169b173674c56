"""The dashboard's request metrics: labelled by route template, never by the raw URL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.dashboards.web import create_app
from carspot.pipeline.metrics import DashboardMetrics
from tests.dashboards.conftest import NOW


def test_requests_are_counted_by_route_template_and_status_code(engine: Engine) -> None:
    metrics = DashboardMetrics()
    app = create_app(
        engine=engine,
        clock=lambda: NOW,
        on_request=lambda route, code, seconds: metrics.request(route=route, code=code, seconds=seconds),
    )
    with TestClient(app) as client:
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
    assert routes == {"/api/brand-share", "unmatched"}  # no query strings, no raw paths
