"""Free loopback ports, picked outside the kernel's ephemeral range.

Ports from the ephemeral range can be taken at any moment by an outgoing connection's source port (our own
Kafka clients included), which would make a port recorded in services.json unusable on the next `up`.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000


def ephemeral_range(path: Path = _EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux default when unknown)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def is_port_free(port: int, *, host: str = LOOPBACK) -> bool:
    """Whether a listening socket could bind `host:port` right now (SO_REUSEADDR, as the servers use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_answers(port: int, *, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pick_free_port(*, exclude: Collection[int] = (), rng: random.Random | None = None, attempts: int = 200) -> int:
    """A free loopback port below the ephemeral range, not in `exclude`."""
    rng = rng or random.Random()
    low, _ = ephemeral_range()
    high = low - 1 if low - 1 > _LOWEST + 1000 else 65535
    for _ in range(attempts):
        port = rng.randint(_LOWEST, high)
        if port not in exclude and is_port_free(port):
            return port
    # Crowded machine: let the kernel choose (ephemeral, but free now).
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise OSError("no free loopback port found")


def reuse_or_pick(preferred: int | None, *, exclude: Collection[int] = (), label: str = "") -> int:
    """`preferred` when it is still free (so URLs stay stable across runs), else a new free port."""
    if preferred is not None and preferred not in exclude and is_port_free(preferred):
        return preferred
    port = pick_free_port(exclude=exclude)
    if preferred is not None:
        log.warning("port %s for %s is taken; using %s instead", preferred, label or "a service", port)
    return port
