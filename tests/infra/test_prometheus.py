"""The Prometheus configuration carspot.infra.prometheus writes is one Prometheus itself accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from carspot.infra import prometheus

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_the_scrape_config_passes_promtool_check_config(tmp_path: Path) -> None:
    binaries = prometheus.binaries(install=False)  # installed by `carspot services up`; missing fails here
    config = tmp_path / "prometheus.yml"
    targets = {"carspot-worker": ["127.0.0.1:9400", "127.0.0.1:9401"], "carspot-ingest": ["127.0.0.1:9410"]}
    config.write_text(prometheus.scrape_config(targets, interval_s=1.0, rule_files=[ALERTS]))
    done = subprocess.run(
        [binaries.promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout + done.stderr
    jobs = json.loads(config.read_text())["scrape_configs"]
    assert [(job["job_name"], job["static_configs"][0]["targets"]) for job in jobs] == list(targets.items())
