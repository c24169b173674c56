"""`carspot status` and `carspot dlq`: times as the operators type them, and mistakes refused before any Kafka call
(the commands against the real services: tests/integration/test_ops_tools.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from carspot.cli.main import app
from carspot.cli.operations import parse_time

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW - timedelta(minutes=90)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2026-12-06T08:00Z", datetime(2026, 12, 6, 8, 0, tzinfo=UTC)),
        ("2026-12-06T09:00+01:00", datetime(2026, 12, 6, 9, 0, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-12-06", datetime(2026, 12, 6, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_times_are_durations_back_from_now_or_iso_times(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-3h", "2026-13-01"])
def test_a_time_that_is_neither_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_time(text, now=NOW)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dlq", "replay"], "choose what to replay"),
        (["dlq", "replay", "seven"], "not a dead-letter id"),
        (["dlq", "show", "0-42"], "not a dead-letter id"),
        (["dlq", "list", "--since", "last week"], "not a duration"),
        (["status", "--since", "soon"], "not a duration"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARSPOT_KAFKA_BOOTSTRAP", "127.0.0.1:9")  # never reached: refused before any call
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
