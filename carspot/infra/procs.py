"""Running commands with timeouts, and starting, checking and stopping the detached servers.

A recorded pid only counts as "ours" when the process is alive (not a zombie) and its command line still
holds a marker we chose (e.g. its config file's path), so a pid recycled by the kernel is never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Popen objects of servers this interpreter started, kept so their exit can be reaped (no zombies, no
# "subprocess still running" warnings when the object would otherwise be collected).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunAs:
    """A system user to run a command as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: RunAs | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing output; never raises for a non-zero exit (callers decide)."""
    log.debug("run %s", " ".join(argv))
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}
    try:
        return subprocess.run(  # type: ignore[call-overload]
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        return subprocess.CompletedProcess(
            list(argv), returncode=-1, stdout=out + f"\n(timed out after {timeout_s:.0f}s)"
        )
    except OSError as exc:
        return subprocess.CompletedProcess(list(argv), returncode=-1, stdout=f"could not run {argv[0]}: {exc}")


def spawn_detached(argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str] | None = None) -> int:
    """Start a server in its own session (it outlives us), stdout+stderr appended to `log_path`; its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    log.debug("started pid %s: %s", proc.pid, " ".join(argv))
    return proc.pid


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def is_alive(pid: int | None) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    if pid is None or pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:  # started by this interpreter: poll() reaps it and keeps the exit code
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def is_ours(pid: int | None, markers: Sequence[str]) -> bool:
    """Alive and its command line holds every marker (guards against recycled pids)."""
    if not is_alive(pid):
        return False
    assert pid is not None
    line = cmdline(pid)
    return bool(line) and all(marker in line for marker in markers)


def exit_code(pid: int) -> int | None:
    """The exit status of a server this interpreter started, once it has exited."""
    child = _CHILDREN.get(pid)
    return child.poll() if child is not None else None


def terminate(pid: int, *, grace_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after `grace_s`; True once the process is gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if not is_alive(pid):
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            log.error("not allowed to signal pid %s", pid)
            return False
        if wait_until(lambda: not is_alive(pid), timeout_s=wait_s):
            return True
        if sig == signal.SIGTERM:
            log.warning("pid %s ignored SIGTERM for %.0fs; sending SIGKILL", pid, grace_s)
    return not is_alive(pid)


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate()` until true or `timeout_s` elapses."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
