"""The alert rules are valid (promtool check rules) and do what they say (promtool test rules)."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import DEPLOY

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=RULES.parent)


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = promtool_run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    done = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_the_issue_asks_for_is_unit_tested() -> None:
    tested = RULE_TESTS.read_text()
    for alert in (
        "CarSpotConsumerLagGrowing",
        "CarSpotDeadLetterRate",
        "CarSpotNoAnalysis",
        "CarSpotServiceUnreachable",
        "CarSpotIngestRejectionRate",
        "CarSpotNoWorker",
        "CarSpotTargetDown",
    ):
        assert f"alertname: {alert}" in tested and f"alert: {alert}" in RULES.read_text()
