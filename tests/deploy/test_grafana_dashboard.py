"""The Grafana dashboard asks only for series CarSpot exports, with labels they have, in valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carspot.pipeline.metrics import DashboardMetrics, IngestMetrics, WorkerMetrics
from tests.deploy.conftest import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "carspot.json"
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every series it scrapes


def exported() -> dict[str, set[str]]:
    """Every series name CarSpot's processes export, with its label names: each metrics object used once, through
    its public methods, so every labelled series has a child, then read back from the registries."""
    worker = WorkerMetrics()
    worker.read(1)
    worker.analysed()
    worker.linked(kind="repost")
    worker.dead_lettered(["decode_error"])
    worker.stage("decode", 0.01)
    worker.batch(1)
    worker.stored([datetime.now(UTC)])
    worker.lag({0: 1})
    worker.model(version="v", mode="detector", detector="d")
    worker.services.set("kafka", True)
    ingest = IngestMetrics(source="http")
    ingest.seen()
    ingest.emitted(kind="picture")
    ingest.rejected(reason="not_an_image")
    ingest.duplicate(kind="post_id")
    ingest.services.set("redis", True)
    dashboard = DashboardMetrics()
    dashboard.request(route="/", code=200, seconds=0.01)
    dashboard.services.set("postgresql", True)
    series: dict[str, set[str]] = {}
    for registry in (worker.registry, ingest.registry, dashboard.registry):
        for family in registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


def expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert found, "the dashboard has panels with queries"
    return found


def test_every_expression_names_only_exported_series() -> None:
    names = exported()
    for expr in expressions():
        used = set(re.findall(r"\bcarspot_[a-z0-9_]+", expr))
        assert used or expr.startswith("up{"), f"{expr!r} reads no CarSpot series"
        assert used <= set(names), f"{expr!r} names series CarSpot does not export: {sorted(used - set(names))}"


def test_every_grouping_label_exists_on_the_series_it_groups() -> None:
    names = exported()
    for expr in expressions():
        labels = set().union(*(names[n] for n in re.findall(r"\bcarspot_[a-z0-9_]+", expr))) | SCRAPE_LABELS
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            wanted = {label.strip() for label in group.split(",")}
            assert wanted <= labels, f"{expr!r} groups by labels the series lack: {sorted(wanted - labels)}"


def test_every_expression_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each query as a recording rule, so promtool parses it (Grafana's $__rate_interval as 5m)."""
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [
                    {"record": f"grafana:expr{i}", "expr": expr.replace("$__rate_interval", "5m")}
                    for i, expr in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "grafana-rules.yml"
    path.write_text(json.dumps(rules))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_series_the_code_does_not_export_is_caught() -> None:
    """The check itself can fail: a misspelt series is not among the exported names."""
    assert "carspot_worker_messages_analyzed_total" not in exported()
    assert "carspot_worker_messages_analysed_total" in exported()
