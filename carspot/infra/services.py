"""Start, inspect and stop the real Kafka, PostgreSQL and Redis that CarSpot develops and tests against, on
loopback, without Docker; used by `carspot services up|down|status` and by CI on a fresh machine.

- `up` installs what is missing (apt-get for postgresql/redis-server, and prometheus, whose server and promtool
  the metrics tests run, Maven Central for the Kafka jars),
  starts each service that is not already running, waits until it really answers, creates the Kafka topics,
  and writes ROOT/services.json (ports, pids, password; mode 0600) and ROOT/services.env (for Settings).
  It is idempotent: a recorded service that is alive and answering is left alone, stale pids are dropped, and
  ports picked on the first run are reused while they are free, so URLs stay stable.
- `down` stops only the processes `up` recorded (and verifies each pid's command line first), and removes
  ROOT/services.env, so no command goes on using the address of a stopped service (services.json stays: the
  next `up` reuses its ports, cluster and password).
- A service that cannot be installed or started raises ServiceStartError naming it, with its log tail.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carspot.infra import kafka_broker, postgres, prometheus, redis_server
from carspot.infra import state as state_file
from carspot.infra.errors import ServiceStartError
from carspot.infra.ports import LOOPBACK, reuse_or_pick
from carspot.infra.procs import RunAs, is_alive, terminate
from carspot.infra.state import KafkaState, PostgresState, RedisState, State

__all__ = [
    "SERVICE_NAMES",
    "Endpoints",
    "ServiceStartError",
    "ServiceStatus",
    "down",
    "postgres_alive",
    "status",
    "up",
    "write_env_file",
]

log = logging.getLogger(__name__)

SERVICE_NAMES = (kafka_broker.SERVICE, postgres.SERVICE, redis_server.SERVICE)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class Endpoints:
    """Where the running services answer; what the app's Settings need."""

    kafka_bootstrap: str
    database_url: str
    redis_url: str

    def as_env(self) -> dict[str, str]:
        return {
            "CARSPOT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CARSPOT_DATABASE_URL": self.database_url,
            "CARSPOT_REDIS_URL": self.redis_url,
        }


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `status` sees it: running = the recorded pid is ours, alive, and its port answers."""

    name: str
    running: bool
    endpoint: str | None
    pid: int | None


def write_env_file(endpoints: Endpoints, path: Path) -> None:
    """KEY=value lines the app's Settings read; mode 0600 because the database URL holds the password."""
    lines = [f"{key}={value}" for key, value in endpoints.as_env().items()]
    state_file.write_private(path, "# Written by `carspot services up`.\n" + "\n".join(lines) + "\n")


def _check_topics(topics: Mapping[str, int]) -> None:
    for name, partitions in topics.items():
        if not _TOPIC_NAME.match(name) or name in (".", ".."):
            raise ValueError(f"invalid Kafka topic name {name!r}")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be a positive int, got {partitions!r}")


def _endpoints(st: State) -> Endpoints:
    assert st.kafka is not None and st.postgresql is not None and st.redis is not None
    return Endpoints(
        kafka_bootstrap=f"{LOOPBACK}:{st.kafka.port}",
        database_url=postgres.database_url(port=st.postgresql.port, password=st.postgresql.password),
        redis_url=redis_server.redis_url(port=st.redis.port),
    )


def _run_as(pg: PostgresState) -> RunAs | None:
    return postgres.system_user(create=False) if pg.run_as else None


def _abandon(pid: int | None) -> None:
    """Stop a process this `up` started that then failed to become ready (no half-started servers left)."""
    if pid is not None and is_alive(pid):
        terminate(pid, grace_s=10.0)


def up(*, root: Path, topics: Mapping[str, int], install: bool = True, timeout_s: float = 120) -> Endpoints:
    """Start whatever is not running, wait until all three answer, ensure `topics` (name -> partitions).

    `timeout_s` bounds each service's start-up wait; installing packages and downloading jars have their own,
    longer limits. Raises ServiceStartError naming the service that failed.
    """
    _check_topics(topics)
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    with state_file.locked(root):
        st = state_file.load(root)
        try:
            return _up(root, st, topics, install=install, timeout_s=timeout_s)
        finally:
            state_file.save(root, st)


def _up(root: Path, st: State, topics: Mapping[str, int], *, install: bool, timeout_s: float) -> Endpoints:
    kpaths = kafka_broker.KafkaPaths.under(root)
    rpaths = redis_server.RedisPaths.under(root)

    # Which recorded processes are still ours (alive; maybe still starting), and which ports they hold.
    kafka_alive = st.kafka is not None and kafka_broker.is_ours_alive(st.kafka, kpaths)
    pg_alive = st.postgresql is not None and postgres.is_ours_alive(st.postgresql)
    redis_alive = st.redis is not None and redis_server.is_ours_alive(st.redis)
    taken: set[int] = set()
    if kafka_alive and st.kafka is not None:
        taken |= {st.kafka.port, st.kafka.controller_port}
    if pg_alive and st.postgresql is not None:
        taken.add(st.postgresql.port)
    if redis_alive and st.redis is not None:
        taken.add(st.redis.port)

    # Prometheus is not a service here (each metrics test starts its own), but it is installed with the others.
    try:
        prometheus.binaries(install=install)
    except ServiceStartError as exc:
        if install:
            raise
        log.warning("%s; the metrics tests need it", exc)

    # Kafka first: its JVM boots while PostgreSQL and Redis start.
    kafka_launched = False
    if not kafka_alive:
        java = kafka_broker.ensure_runtime(kpaths, install=install)
        st.kafka = _kafka_state(st.kafka, kpaths, taken)
        st.kafka.pid = kafka_broker.launch(st.kafka, kpaths, java)
        kafka_launched = True
        state_file.save(root, st)
    assert st.kafka is not None

    try:
        if not pg_alive:
            _start_postgres(root, st, taken, install=install, timeout_s=timeout_s)
        else:
            assert st.postgresql is not None
            pg_paths = postgres.PostgresPaths(Path(st.postgresql.data_dir).parent)
            assert st.postgresql.pid is not None
            postgres.wait_ready(st.postgresql, pg_paths, st.postgresql.pid, timeout_s=timeout_s)

        redis_launched = False
        if not redis_alive:
            st.redis = RedisState(port=reuse_or_pick(st.redis.port if st.redis else None, exclude=taken, label="redis"))
            taken.add(st.redis.port)
            st.redis.pid = redis_server.launch(st.redis, rpaths, install=install)
            redis_launched = True
            state_file.save(root, st)
        assert st.redis is not None
        try:
            redis_server.wait_ready(st.redis, rpaths, timeout_s=timeout_s)
        except ServiceStartError:
            if redis_launched:
                _abandon(st.redis.pid)
                st.redis.pid = None
            raise

        kafka_broker.wait_ready(st.kafka, kpaths, timeout_s=timeout_s)
    except ServiceStartError as exc:
        if kafka_launched and exc.service == kafka_broker.SERVICE:
            _abandon(st.kafka.pid)
            st.kafka.pid = None
        raise
    bootstrap = f"{LOOPBACK}:{st.kafka.port}"
    kafka_broker.ensure_topics(bootstrap, topics, timeout_s=timeout_s, logs=kpaths.logs)

    endpoints = _endpoints(st)
    write_env_file(endpoints, root / state_file.ENV_FILE)
    return endpoints


def _kafka_state(previous: KafkaState | None, paths: kafka_broker.KafkaPaths, taken: set[int]) -> KafkaState:
    if previous is not None and previous.pid is not None:
        log.info("kafka pid %s recorded but not running; starting afresh", previous.pid)
    port = reuse_or_pick(previous.port if previous else None, exclude=taken, label="kafka")
    taken.add(port)
    cport = reuse_or_pick(previous.controller_port if previous else None, exclude=taken, label="kafka controller")
    taken.add(cport)
    cluster_id = (previous.cluster_id if previous else None) or kafka_broker.formatted_cluster_id(paths)
    return KafkaState(
        port=port,
        controller_port=cport,
        cluster_id=cluster_id or kafka_broker.new_cluster_id(),
        version=kafka_broker.kafka_version(),
    )


def _start_postgres(root: Path, st: State, taken: set[int], *, install: bool, timeout_s: float) -> None:
    bin_dir = postgres.find_bin_dir(install=install)
    user = postgres.system_user(create=install)
    previous = st.postgresql
    if previous is not None and previous.pid is not None:
        log.info("postgresql pid %s recorded but not running; starting afresh", previous.pid)
    if previous is None:
        home, note = postgres.choose_home(root, user)
        paths = postgres.PostgresPaths(home)
        if (paths.data / "PG_VERSION").exists():
            raise ServiceStartError(
                postgres.SERVICE,
                f"{paths.data} holds a cluster but {root / state_file.STATE_FILE} (with its password) "
                f"is gone; delete {home} to start afresh",
            )
        port = reuse_or_pick(None, exclude=taken, label="postgresql")
        socket_dir = postgres.socket_dir_for(paths, port)
        st.postgresql = PostgresState(
            port=port,
            password=secrets.token_urlsafe(24),
            data_dir=str(paths.data),
            socket_dir=str(socket_dir) if socket_dir else None,
            run_as=user.name if user else None,
            note=note,
        )
    else:
        paths = postgres.PostgresPaths(Path(previous.data_dir).parent)
        previous.port = reuse_or_pick(previous.port, exclude=taken, label="postgresql")
        socket_dir = postgres.socket_dir_for(paths, previous.port)
        previous.socket_dir = str(socket_dir) if socket_dir else None
        previous.pid = None
    pg = st.postgresql
    assert pg is not None
    taken.add(pg.port)
    pg.bin_dir = str(bin_dir)
    postgres.prepare_home(paths, user)
    state_file.save(root, st)  # the password is recorded before initdb uses it
    postgres.init_cluster(pg, paths, bin_dir, user)
    pg.pid = postgres.start(pg, paths, bin_dir, user, timeout_s=timeout_s)
    state_file.save(root, st)


def status(*, root: Path) -> dict[str, ServiceStatus]:
    """Each service's recorded pid and whether it is alive and answering (read-only; starts nothing)."""
    root = root.expanduser().resolve()
    st = state_file.load(root)
    result: dict[str, ServiceStatus] = {}

    kafka_running = st.kafka is not None and kafka_broker.is_running(st.kafka, kafka_broker.KafkaPaths.under(root))
    result[kafka_broker.SERVICE] = ServiceStatus(
        kafka_broker.SERVICE,
        kafka_running,
        f"{LOOPBACK}:{st.kafka.port}" if kafka_running and st.kafka else None,
        st.kafka.pid if st.kafka else None,
    )
    pg_running = st.postgresql is not None and postgres.is_running(st.postgresql)
    result[postgres.SERVICE] = ServiceStatus(
        postgres.SERVICE,
        pg_running,
        f"postgresql://{postgres.DB_USER}@{LOOPBACK}:{st.postgresql.port}/{postgres.DB_NAME}"
        if pg_running and st.postgresql
        else None,
        st.postgresql.pid if st.postgresql else None,
    )
    redis_running = st.redis is not None and redis_server.is_running(st.redis)
    result[redis_server.SERVICE] = ServiceStatus(
        redis_server.SERVICE,
        redis_running,
        redis_server.redis_url(port=st.redis.port) if redis_running and st.redis else None,
        st.redis.pid if st.redis else None,
    )
    return result


def postgres_alive(*, root: Path) -> bool:
    """Whether the PostgreSQL `up` recorded under `root` is alive (its pid, checked to be ours); no connection
    is made, so a command can say at start-up that the database it was told to use is not running."""
    st = state_file.load(root.expanduser().resolve())
    return st.postgresql is not None and postgres.is_ours_alive(st.postgresql)


def down(*, root: Path) -> list[str]:
    """Stop the services `up` recorded under `root` (only those pids) and remove their addresses
    (services.env); names of those that were running."""
    root = root.expanduser().resolve()
    stopped: list[str] = []
    if not (root / state_file.STATE_FILE).exists():
        (root / state_file.ENV_FILE).unlink(missing_ok=True)
        return stopped
    with state_file.locked(root):
        # First, so that even a failing stop leaves no command pointed at a service on its way down.
        (root / state_file.ENV_FILE).unlink(missing_ok=True)
        st = state_file.load(root)
        try:
            if st.redis is not None:
                if redis_server.stop(st.redis):
                    stopped.append(redis_server.SERVICE)
                st.redis.pid = None
            if st.postgresql is not None:
                if postgres.stop(st.postgresql, _run_as(st.postgresql)):
                    stopped.append(postgres.SERVICE)
                st.postgresql.pid = None
            if st.kafka is not None:
                if kafka_broker.stop(st.kafka, kafka_broker.KafkaPaths.under(root)):
                    stopped.append(kafka_broker.SERVICE)
                st.kafka.pid = None
        finally:
            state_file.save(root, st)
    return stopped
