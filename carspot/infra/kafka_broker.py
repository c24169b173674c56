"""A single-node Apache Kafka 4.x (KRaft: broker and controller in one JVM), run from Maven Central jars.

Why jars and not Docker or the release tarball: this machine has neither a Docker engine nor general internet,
but it does have Maven Central, and ~/.m2 doubles as a cache between CI runs. `pom.xml` (next to this module)
names the Kafka version; `mvn dependency:copy-dependencies` puts its runtime tree in ROOT/kafka/libs.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import logging
import re
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carspot.infra.errors import ServiceStartError
from carspot.infra.install import require_binary
from carspot.infra.ports import LOOPBACK, port_answers
from carspot.infra.procs import exit_code, is_alive, is_ours, run, spawn_detached, terminate
from carspot.infra.state import KafkaState

log = logging.getLogger(__name__)

SERVICE = "kafka"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
NODE_ID = 1
HEAP = ("-Xms256m", "-Xmx768m")
_MIN_JAVA = 17
_MVN_TIMEOUT_S = 1200.0
_COMPLETE_MARKER = ".carspot-complete.json"
_MAIN_JAR = re.compile(r"^kafka_2\.13-(?P<version>[\w.\-]+)\.jar$")


@dataclass(frozen=True)
class KafkaPaths:
    """Where everything Kafka lives under the services root."""

    home: Path

    @classmethod
    def under(cls, root: Path) -> KafkaPaths:
        return cls(home=root / "kafka")

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def server_properties(self) -> Path:
        return self.config_dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.config_dir / "log4j2.properties"

    @property
    def pom(self) -> Path:
        return self.home / "pom.xml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def out_log(self) -> Path:
        return self.logs_dir / "kafka.out"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def logs(self) -> tuple[Path, Path]:
        return (self.out_log, self.server_log)


def _resource_text(name: str) -> str:
    return importlib.resources.files("carspot.infra").joinpath(name).read_text(encoding="utf-8")


def pom_properties(pom_text: str | None = None) -> dict[str, str]:
    """The <properties> of the bundled pom.xml (kafka.version, log4j.version)."""
    tree = ET.fromstring(pom_text if pom_text is not None else _resource_text("pom.xml"))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = tree.find("m:properties", ns)
    if props is None:
        return {}
    return {child.tag.split("}", 1)[-1]: (child.text or "").strip() for child in props}


def kafka_version() -> str:
    """The Kafka version the bundled pom.xml pins."""
    return pom_properties()["kafka.version"]


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka makes them: a random UUID, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that look like command-line flags
            return text


def render_server_properties(*, port: int, controller_port: int, data_dir: Path, host: str = LOOPBACK) -> str:
    """server.properties for one combined broker+controller, bound to loopback, 16 MiB messages."""
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "auto.create.topics.enable": "false",
        # One node: every internal topic has one replica (the defaults of 3 would never become available).
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Fewer internal partitions than the default 50: quicker first consumer-group join on a laptop.
        "offsets.topic.num.partitions": 8,
        "transaction.state.log.num.partitions": 8,
        "group.initial.rebalance.delay.ms": 0,
        # A killed worker's open transaction (its dead letters and offsets) stalls the group's offset fetch and
        # read_committed readers until the broker aborts it: at its timeout (10 s, carspot.pipeline.kafka_io) plus
        # up to this check interval (default 10 s). At the default, a worker restarted with --idle-timeout 10
        # could be assigned its partitions, read nothing for 10 s and stop with posts unread.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
        # Normalised JPEGs ride in the message value: allow 16 MiB end to end.
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "replica.fetch.max.bytes": MAX_MESSAGE_BYTES,
        "replica.fetch.response.max.bytes": 2 * MAX_MESSAGE_BYTES,
        "socket.request.max.bytes": 8 * MAX_MESSAGE_BYTES,
        "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
        "num.recovery.threads.per.data.dir": 1,
    }
    lines = ["# Written by carspot.infra.kafka_broker; regenerated on every `up`."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """A minimal java.util.Properties reader for the files rendered here (key=value, # comments)."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip()
    return result


def java_major(version_output: str) -> int | None:
    """The Java feature release from `java -version` output (`"17.0.15"` -> 17, `"1.8.0"` -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_runtime(paths: KafkaPaths, *, install: bool) -> str:
    """Java 17+ and a complete ROOT/kafka/libs; the java executable."""
    java = require_binary("java", package="default-jre-headless", service=SERVICE, install=install)
    result = run([java, "-version"], timeout_s=60)
    major = java_major(result.stdout)
    if major is None or major < _MIN_JAVA:
        raise ServiceStartError(SERVICE, f"Kafka 4 needs Java {_MIN_JAVA}+, found: {result.stdout.strip()}")
    ensure_jars(paths, install=install)
    return java


def _libs_complete(paths: KafkaPaths, pom_sha: str) -> bool:
    try:
        marker = json.loads((paths.libs / _COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    jars = marker.get("jars") or []
    return marker.get("pom_sha256") == pom_sha and bool(jars) and all((paths.libs / j).is_file() for j in jars)


def ensure_jars(paths: KafkaPaths, *, install: bool) -> None:
    """Copy Kafka's runtime jars into ROOT/kafka/libs with Maven, unless a complete copy is already there."""
    pom_text = _resource_text("pom.xml")
    pom_sha = hashlib.sha256(pom_text.encode()).hexdigest()
    if _libs_complete(paths, pom_sha):
        return
    mvn = require_binary("mvn", package="maven", service=SERVICE, install=install)
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.pom.write_text(pom_text)
    partial = paths.home / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    argv = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(paths.pom), "dependency:copy-dependencies"]
    argv += [f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    if not install:
        argv.append("--offline")
    log.info("fetching Kafka %s jars with Maven into %s", kafka_version(), paths.libs)
    started = time.monotonic()
    result = run(argv, timeout_s=_MVN_TIMEOUT_S, cwd=paths.home)
    jars = sorted(p.name for p in partial.glob("*.jar")) if partial.is_dir() else []
    if result.returncode != 0 or not any(_MAIN_JAR.match(j) for j in jars):
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceStartError(SERVICE, "fetching the Kafka jars with Maven failed", output=result.stdout)
    shutil.rmtree(paths.libs, ignore_errors=True)
    partial.rename(paths.libs)
    marker = {"pom_sha256": pom_sha, "jars": jars}
    (paths.libs / _COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    log.info("%d Kafka jars ready in %.0fs", len(jars), time.monotonic() - started)


def markers(paths: KafkaPaths) -> list[str]:
    """What the broker's command line must contain for a recorded pid to be ours."""
    return ["kafka.Kafka", str(paths.server_properties)]


def is_ours_alive(state: KafkaState, paths: KafkaPaths) -> bool:
    """The recorded broker is alive (it may still be starting)."""
    return is_ours(state.pid, markers(paths))


def is_running(state: KafkaState, paths: KafkaPaths) -> bool:
    """Alive and accepting connections."""
    return is_ours_alive(state, paths) and port_answers(state.port)


def formatted_cluster_id(paths: KafkaPaths) -> str | None:
    """The cluster id in an already formatted log dir (so a lost services.json does not orphan the data)."""
    try:
        text = (paths.data_dir / "meta.properties").read_text()
    except OSError:
        return None
    return parse_properties(text).get("cluster.id") or None


def _jvm(java: str, paths: KafkaPaths, heap: tuple[str, ...]) -> list[str]:
    return [
        java,
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs_dir}",
        f"-Dlog4j2.configurationFile={paths.log4j_config}",
        "-cp",
        f"{paths.libs}/*",
    ]


def write_config(state: KafkaState, paths: KafkaPaths) -> None:
    """(Re)write server.properties and the log4j2 config for the recorded ports."""
    for directory in (paths.config_dir, paths.data_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(
        render_server_properties(port=state.port, controller_port=state.controller_port, data_dir=paths.data_dir)
    )
    paths.log4j_config.write_text(_resource_text("kafka-log4j2.properties"))


def format_storage(state: KafkaState, paths: KafkaPaths, java: str) -> None:
    """Format the KRaft log directory once (static voters, so no --standalone)."""
    if (paths.data_dir / "meta.properties").exists():
        return
    argv = [*_jvm(java, paths, ("-Xmx256m",)), "kafka.tools.StorageTool", "format"]
    argv += ["-t", state.cluster_id, "-c", str(paths.server_properties), "--ignore-formatted"]
    result = run(argv, timeout_s=180, cwd=paths.home)
    if result.returncode != 0:
        raise ServiceStartError(SERVICE, "formatting the KRaft storage failed", output=result.stdout)


def launch(state: KafkaState, paths: KafkaPaths, java: str) -> int:
    """Write config, format storage if new, start the broker detached; its pid (not yet ready)."""
    write_config(state, paths)
    format_storage(state, paths, java)
    argv = [*_jvm(java, paths, HEAP), "kafka.Kafka", str(paths.server_properties)]
    pid = spawn_detached(argv, log_path=paths.out_log, cwd=paths.home)
    log.info("kafka starting (pid %s) on %s:%s", pid, LOOPBACK, state.port)
    return pid


def _admin(bootstrap: str, *, timeout_s: float) -> Any:
    from kafka.admin import KafkaAdminClient

    timeout_ms = max(1000, int(timeout_s * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="carspot-infra",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )


def wait_ready(state: KafkaState, paths: KafkaPaths, *, timeout_s: float) -> None:
    """Until the broker answers metadata with itself registered; ServiceStartError if it dies or stalls."""
    bootstrap = f"{LOOPBACK}:{state.port}"
    deadline = time.monotonic() + timeout_s
    last_error = "the port never answered"
    while True:
        if state.pid is None or not is_alive(state.pid):
            code = exit_code(state.pid) if state.pid is not None else None
            how = f" with code {code}" if code is not None else ""
            raise ServiceStartError(
                SERVICE, f"the broker (pid {state.pid}) exited{how} during start-up", logs=paths.logs
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceStartError(
                SERVICE, f"not ready on {bootstrap} after {timeout_s:.0f}s ({last_error})", logs=paths.logs
            )
        if port_answers(state.port):
            try:
                admin = _admin(bootstrap, timeout_s=min(5.0, remaining))
                try:
                    brokers = admin.describe_cluster().get("brokers") or []
                finally:
                    admin.close()
                if brokers:
                    return
                last_error = "no broker registered yet"
            except Exception as exc:  # any client error means "not ready yet"; the deadline bounds it
                last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)


def ensure_topics(bootstrap: str, topics: Mapping[str, int], *, timeout_s: float, logs: tuple[Path, ...]) -> None:
    """Create missing topics, grow ones with fewer partitions, and set max.message.bytes to 16 MiB on all."""
    if not topics:
        return
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    configs = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    while True:
        try:
            admin = _admin(bootstrap, timeout_s=min(15.0, max(1.0, deadline - time.monotonic())))
            try:
                _apply_topics(admin, topics, configs, ConfigResource, ConfigResourceType)
                return
            finally:
                admin.close()
        except KafkaError as exc:  # e.g. the controller not settled yet; retried until the deadline
            if time.monotonic() >= deadline:
                raise ServiceStartError(SERVICE, f"could not create topics {sorted(topics)}: {exc}", logs=logs) from exc
            log.debug("topic set-up not done yet (%s); retrying", exc)
            time.sleep(1.0)


def _apply_topics(
    admin: Any, topics: Mapping[str, int], configs: dict[str, str], resource: Any, resource_type: Any
) -> None:
    existing = set(admin.list_topics())
    missing = {name: n for name, n in topics.items() if name not in existing}
    if missing:
        log.info("creating topics %s", missing)
        admin.create_topics(
            {name: {"num_partitions": n, "replication_factor": 1, "configs": configs} for name, n in missing.items()},
            wait_for_metadata=True,
        )
    present = [name for name in topics if name in existing]
    if not present:
        return
    counts = {t["name"]: len(t.get("partitions") or []) for t in admin.describe_topics(present)}
    grow = {name: topics[name] for name in present if counts.get(name, 0) < topics[name]}
    if grow:
        log.info("adding partitions: %s", grow)
        admin.create_partitions(grow)
        admin.wait_for_topics(list(grow))
    result = admin.alter_configs([resource(resource_type.TOPIC, name, dict(configs)) for name in present])
    failures = {name: outcome for name, outcome in (result.get("topic") or {}).items() if outcome != "OK"}
    if failures:
        raise RuntimeError(f"setting {configs} failed: {failures}")


def stop(state: KafkaState, paths: KafkaPaths) -> bool:
    """Stop the recorded broker (SIGTERM: controlled shutdown, then SIGKILL); True if it was running."""
    if not is_ours(state.pid, markers(paths)):
        return False
    assert state.pid is not None
    log.info("stopping kafka (pid %s)", state.pid)
    if not terminate(state.pid, grace_s=30.0):
        log.error("kafka pid %s did not exit", state.pid)
    return True
