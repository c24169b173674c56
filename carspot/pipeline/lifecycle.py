"""Stopping cleanly: the first SIGTERM/SIGINT asks the loop to finish its batch, commit and leave; the second
exits at once (what an operator means by pressing Ctrl-C twice)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("carspot.pipeline.lifecycle")

HARD_EXIT_CODE = 130


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` on the first SIGTERM or SIGINT; exit immediately on the second."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("signal %s: finishing the current batch, then stopping", signal.Signals(signum).name)
            stop()
        else:
            log.warning("second signal: exiting now")
            os._exit(HARD_EXIT_CODE)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
