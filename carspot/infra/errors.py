"""The one error the service starters raise.

    RuntimeError
    └── ServiceStartError   a service ("kafka", "postgresql", "redis") could not be installed or started

Callers (the CLI, CI) turn it into a failed run, never a skip, so the message carries what an operator needs:
the service's name first and the last lines of its log files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

_TAIL_LINES = 40


def tail(path: Path, *, lines: int = _TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a (possibly large, possibly missing) log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class ServiceStartError(RuntimeError):
    """A service could not be installed or started; `service` names it, the message holds its log tail."""

    def __init__(self, service: str, message: str, *, logs: Sequence[Path] = (), output: str | None = None) -> None:
        self.service = service
        self.logs = tuple(logs)
        parts = [f"{service}: {message}"]
        if output and output.strip():
            parts.append(f"--- command output ---\n{_last_lines(output)}")
        for log in self.logs:
            text = tail(log)
            if text.strip():
                parts.append(f"--- tail of {log} ---\n{text}")
        super().__init__("\n".join(parts))


def _last_lines(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
