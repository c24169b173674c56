"""Stopping: the first signal asks for a clean stop, the second exits at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from carspot.pipeline.lifecycle import HARD_EXIT_CODE

PROGRAM = textwrap.dedent(
    """
    import sys, time
    from carspot.pipeline.lifecycle import install_stop_handlers
    stopping = []
    install_stop_handlers(lambda: stopping.append(True))
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if stopping and "--clean" in sys.argv:
            print("stopped cleanly", flush=True)
            sys.exit(0)
        time.sleep(0.01)
    sys.exit(3)
    """
)


def start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_first_sigterm_asks_the_loop_to_stop() -> None:
    proc = start("--clean")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert proc.stdout is not None and "stopped cleanly" in proc.stdout.read()


def test_second_signal_exits_at_once() -> None:
    proc = start()  # a loop that ignores the stop request, like one stuck in a long batch
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == HARD_EXIT_CODE
