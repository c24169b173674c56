"""PostgreSQL from Debian's packages, as a private cluster under the services root (not the system cluster).

PostgreSQL refuses to run as root, so as root every initdb/pg_ctl runs as the `postgres` system user on a
directory it owns; that user must be able to traverse every parent directory, and when it cannot (e.g. a
pytest tmp dir under a 0700 /tmp/pytest-of-root) the cluster lives under /var/lib/carspot/services instead,
which services.json records with the reason. As any other user everything runs as that user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from carspot.infra.errors import ServiceStartError
from carspot.infra.install import apt_install
from carspot.infra.ports import LOOPBACK, port_answers
from carspot.infra.procs import RunAs, cmdline, is_alive, is_ours, run, terminate
from carspot.infra.state import PostgresState

log = logging.getLogger(__name__)

SERVICE = "postgresql"
DB_NAME = "carspot"
DB_USER = "carspot"
SYSTEM_USER = "postgres"
FALLBACK_BASE = Path("/var/lib/carspot/services")
_PG_LIB = Path("/usr/lib/postgresql")
_BINARIES = ("initdb", "pg_ctl", "postgres")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, minus a little slack
_CONF_FILE = "carspot.conf"


@dataclass(frozen=True)
class PostgresPaths:
    """The cluster's directories; `home` is ROOT/postgres or the recorded fallback."""

    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def log(self) -> Path:
        return self.log_dir / "postgresql.log"


def database_url(*, port: int, password: str, host: str = LOOPBACK) -> str:
    """SQLAlchemy URL (psycopg 3 driver) for the carspot database."""
    return f"postgresql+psycopg://{DB_USER}:{quote(password, safe='')}@{host}:{port}/{DB_NAME}"


def _bin_version(bin_dir: Path) -> int:
    return int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0


def _find_bin_dir() -> Path | None:
    candidates = [d / "bin" for d in _PG_LIB.glob("*") if all((d / "bin" / b).is_file() for b in _BINARIES)]
    if candidates:
        return max(candidates, key=_bin_version)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        bin_dir = Path(pg_ctl).resolve().parent
        if all((bin_dir / b).is_file() for b in _BINARIES):
            return bin_dir
    return None


def find_bin_dir(*, install: bool) -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb, pg_ctl and postgres; apt-installs when missing."""
    found = _find_bin_dir()
    if found is None and install:
        apt_install(["postgresql"], service=SERVICE)
        found = _find_bin_dir()
    if found is None:
        raise ServiceStartError(SERVICE, "initdb/pg_ctl not found; install the Debian package postgresql")
    return found


def server_major(bin_dir: Path) -> str:
    """The major version of the binaries ("15"), from `pg_ctl --version`."""
    result = run([str(bin_dir / "pg_ctl"), "--version"], timeout_s=30)
    match = re.search(r"(\d+)(?:\.\d+)?", result.stdout)
    return match.group(1) if match else ""


def system_user(*, create: bool) -> RunAs | None:
    """Whom to run PostgreSQL as: as root the `postgres` system user (created if missing), else self."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        if not create:
            raise ServiceStartError(SERVICE, f"running as root and the `{SYSTEM_USER}` user does not exist") from None
        useradd = shutil.which("useradd")
        if useradd is None:
            raise ServiceStartError(SERVICE, f"cannot create the `{SYSTEM_USER}` user: useradd missing") from None
        argv = [useradd, "--system", "--user-group", "--home-dir", "/var/lib/postgresql", "--no-create-home"]
        result = run([*argv, "--shell", "/usr/sbin/nologin", SYSTEM_USER], timeout_s=60)
        if result.returncode != 0:
            raise ServiceStartError(SERVICE, f"useradd {SYSTEM_USER} failed", output=result.stdout) from None
        entry = pwd.getpwnam(SYSTEM_USER)
    groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid)
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def can_search(directory: Path, user: RunAs) -> bool:
    """Whether `user` may traverse `directory` by mode bits (owner, else group, else other: as the kernel)."""
    if user.uid == 0:
        return True
    st = directory.stat()
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid or st.st_gid in user.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocking_parent(path: Path, user: RunAs) -> Path | None:
    """The first existing ancestor of `path` that `user` cannot traverse, if any."""
    for directory in reversed(path.parents):
        if directory.exists() and not can_search(directory, user):
            return directory
    return None


def choose_home(root: Path, user: RunAs | None) -> tuple[Path, str | None]:
    """ROOT/postgres, or a fallback under FALLBACK_BASE (and why) when `user` cannot reach ROOT."""
    preferred = root / "postgres"
    if user is None:
        return preferred, None
    blocked = blocking_parent(preferred, user)
    if blocked is None:
        return preferred, None
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    fallback = FALLBACK_BASE / digest / "postgres"
    note = f"{blocked} is not traversable by user {user.name}, so the PostgreSQL cluster lives in {fallback}"
    log.warning("%s", note)
    return fallback, note


def socket_dir_for(paths: PostgresPaths, port: int) -> Path | None:
    """ROOT-local socket directory, or None (TCP only) when the socket path would be too long for Linux."""
    if len(str(paths.socket_dir / f".s.PGSQL.{port}")) > _SOCKET_PATH_MAX:
        return None
    return paths.socket_dir


def _env(user: RunAs | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    if user is not None:
        env.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})
    return env


def _make_dir(path: Path, user: RunAs | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if user is not None:
        os.chown(path, user.uid, user.gid)


def prepare_home(paths: PostgresPaths, user: RunAs | None) -> None:
    """Create the home, log and socket directories, owned by the user PostgreSQL runs as."""
    if paths.home.is_relative_to(FALLBACK_BASE):
        for parent in reversed(paths.home.parents):
            if parent.is_relative_to(FALLBACK_BASE.parent) and not parent.exists():
                parent.mkdir()
                os.chmod(parent, 0o755)
    for directory in (paths.home, paths.log_dir, paths.socket_dir):
        _make_dir(directory, user, 0o700)


def init_cluster(state: PostgresState, paths: PostgresPaths, bin_dir: Path, user: RunAs | None) -> None:
    """initdb once: superuser `carspot` with the generated password, scram-sha-256 everywhere."""
    version_file = paths.data / "PG_VERSION"
    if version_file.exists():
        have, want = version_file.read_text().strip(), server_major(bin_dir)
        if want and have != want:
            raise ServiceStartError(
                SERVICE, f"{paths.data} was initialised by PostgreSQL {have}, but the binaries are {want}"
            )
        return
    pwfile = paths.home / ".initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(state.password + "\n")
    if user is not None:
        os.chown(pwfile, user.uid, user.gid)
    argv = [str(bin_dir / "initdb"), "-D", str(paths.data), "-U", DB_USER, f"--pwfile={pwfile}"]
    argv += ["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"]
    try:
        result = run(argv, timeout_s=300, cwd=paths.home, env=_env(user), user=user)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(paths.data, ignore_errors=True)
        raise ServiceStartError(SERVICE, "initdb failed", output=result.stdout)
    with (paths.data / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# carspot.infra: port, addresses, sockets\ninclude_if_exists = '{_CONF_FILE}'\n")


def render_conf(*, port: int, socket_dir: Path | None, host: str = LOOPBACK) -> str:
    """The settings `up` owns (rewritten each time, since the port may change)."""
    sockets = str(socket_dir) if socket_dir is not None else ""
    return (
        "# Written by carspot.infra.postgres on every `up`.\n"
        f"listen_addresses = '{host}'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{sockets}'\n"
        "password_encryption = 'scram-sha-256'\n"
    )


def markers(paths: PostgresPaths) -> list[str]:
    """What the postmaster's command line must contain for a recorded pid to be ours."""
    return ["postgres", str(paths.data)]


def is_ours_alive(state: PostgresState) -> bool:
    """The recorded postmaster is alive (it may still be starting)."""
    return is_ours(state.pid, markers(PostgresPaths(Path(state.data_dir).parent)))


def is_running(state: PostgresState) -> bool:
    """Alive and accepting connections."""
    return is_ours_alive(state) and port_answers(state.port)


def _postmaster_pid(paths: PostgresPaths) -> int | None:
    try:
        first = (paths.data / "postmaster.pid").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first) if first.strip().isdigit() else None


def _clear_stale_lock(paths: PostgresPaths) -> None:
    """Drop a postmaster.pid left by a crash whose pid now belongs to another process (PostgreSQL would refuse
    to start, believing the cluster is still running)."""
    pid = _postmaster_pid(paths)
    if pid is not None and (not is_alive(pid) or "postgres" not in cmdline(pid)):
        log.info("removing stale %s (pid %s does not run this cluster)", paths.data / "postmaster.pid", pid)
        (paths.data / "postmaster.pid").unlink(missing_ok=True)


def _connect_kwargs(state: PostgresState, dbname: str, timeout_s: float) -> dict[str, object]:
    return {
        "host": LOOPBACK,
        "port": state.port,
        "user": DB_USER,
        "password": state.password,
        "dbname": dbname,
        "connect_timeout": max(1, int(timeout_s)),
        "autocommit": True,
    }


def start(state: PostgresState, paths: PostgresPaths, bin_dir: Path, user: RunAs | None, *, timeout_s: float) -> int:
    """pg_ctl start -w, then wait for a real login and create the carspot database; the postmaster pid."""
    conf = paths.data / _CONF_FILE
    conf.write_text(render_conf(port=state.port, socket_dir=Path(state.socket_dir) if state.socket_dir else None))
    if user is not None:
        os.chown(conf, user.uid, user.gid)
    _clear_stale_lock(paths)
    argv = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-l", str(paths.log), "-w"]
    argv += ["-t", str(max(1, int(timeout_s))), "-s", "start"]
    log.info("postgresql starting on %s:%s", LOOPBACK, state.port)
    result = run(argv, timeout_s=timeout_s + 30, cwd=paths.home, env=_env(user), user=user)
    pid = _postmaster_pid(paths)
    if result.returncode != 0 or pid is None:
        raise ServiceStartError(SERVICE, "pg_ctl start failed", output=result.stdout, logs=[paths.log])
    try:
        wait_ready(state, paths, pid, timeout_s=timeout_s)
        ensure_database(state)
    except Exception as exc:
        # Do not leave a postmaster nobody recorded: the next `up` could not start over it.
        stop_argv = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", "immediate", "-w", "-s", "stop"]
        run(stop_argv, timeout_s=60, cwd=paths.home, env=_env(user), user=user)
        if isinstance(exc, ServiceStartError):
            raise
        raise ServiceStartError(SERVICE, f"set-up after start failed: {exc}", logs=[paths.log]) from exc
    return pid


def wait_ready(state: PostgresState, paths: PostgresPaths, pid: int, *, timeout_s: float) -> None:
    """Until `carspot` can log in over TCP with its password (bounded)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if not is_alive(pid):
            raise ServiceStartError(SERVICE, f"the postmaster (pid {pid}) exited during start-up", logs=[paths.log])
        try:
            with psycopg.connect(**_connect_kwargs(state, "postgres", 3)):  # type: ignore[arg-type]
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise ServiceStartError(SERVICE, f"no login after {timeout_s:.0f}s: {exc}", logs=[paths.log]) from exc
        time.sleep(0.3)


def ensure_database(state: PostgresState) -> None:
    """CREATE DATABASE carspot unless it exists."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**_connect_kwargs(state, "postgres", 10)) as conn:  # type: ignore[arg-type]
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
            log.info("creating database %s", DB_NAME)
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB_NAME), sql.Identifier(DB_USER))
            )


def stop(state: PostgresState, user: RunAs | None) -> bool:
    """pg_ctl stop -m fast for the recorded postmaster (SIGTERM/SIGKILL if that fails); True if it ran."""
    paths = PostgresPaths(Path(state.data_dir).parent)
    if not is_ours(state.pid, markers(paths)):
        return False
    assert state.pid is not None
    log.info("stopping postgresql (pid %s)", state.pid)
    bin_dir = Path(state.bin_dir) if state.bin_dir else _find_bin_dir()
    if bin_dir is not None and (bin_dir / "pg_ctl").is_file():
        argv = [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", "fast", "-w", "-t", "60", "-s", "stop"]
        result = run(argv, timeout_s=90, cwd=paths.home, env=_env(user), user=user)
        if result.returncode != 0:
            log.warning("pg_ctl stop failed: %s", result.stdout.strip())
    if is_alive(state.pid):
        terminate(state.pid, grace_s=30.0)
    return True
