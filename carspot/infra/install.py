"""Installing missing system packages with apt-get, so a fresh CI machine needs nothing but this code.

Only called when a needed binary is missing and the caller allowed installing (`install=True`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence

from carspot.infra.errors import ServiceStartError
from carspot.infra.procs import run

log = logging.getLogger(__name__)

_APT_TIMEOUT_S = 900.0
_updated = False


def _privileged(argv: Sequence[str], *, service: str) -> list[str]:
    if os.geteuid() == 0:
        return list(argv)
    sudo = shutil.which("sudo")
    if sudo is None:
        raise ServiceStartError(
            service, f"needs `{' '.join(argv)}` but is not root and sudo is missing; install it by hand"
        )
    return [sudo, "-n", *argv]


def apt_install(packages: Sequence[str], *, service: str) -> None:
    """`apt-get update` (once per process), then `apt-get install -y`; ServiceStartError on failure."""
    global _updated
    if shutil.which("apt-get") is None:
        raise ServiceStartError(service, f"{', '.join(packages)} missing and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        log.info("apt-get update (for %s)", service)
        result = run(_privileged(["apt-get", "update"], service=service), timeout_s=_APT_TIMEOUT_S, env=env)
        if result.returncode != 0:
            raise ServiceStartError(service, "apt-get update failed", output=result.stdout)
        _updated = True
    log.info("apt-get install %s (for %s)", " ".join(packages), service)
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    result = run(_privileged(argv, service=service), timeout_s=_APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        raise ServiceStartError(service, f"apt-get install {' '.join(packages)} failed", output=result.stdout)


def require_binary(name: str, *, package: str, service: str, install: bool) -> str:
    """The path of executable `name`, apt-installing `package` first when it is missing and allowed."""
    found = shutil.which(name)
    if found is None and install:
        apt_install([package], service=service)
        found = shutil.which(name)
    if found is None:
        hint = "" if install else " (install=False)"
        raise ServiceStartError(service, f"`{name}` not found; install the Debian package {package}{hint}")
    return found
