"""The pure parts of the Kafka launcher: server.properties, the pom, cluster ids, Java version parsing."""

from __future__ import annotations

import base64
from pathlib import Path

from carspot.infra.kafka_broker import (
    MAX_MESSAGE_BYTES,
    java_major,
    kafka_version,
    new_cluster_id,
    parse_properties,
    pom_properties,
    render_server_properties,
)


def _props() -> dict[str, str]:
    text = render_server_properties(port=21001, controller_port=21002, data_dir=Path("/srv/k/data"))
    return parse_properties(text)


def test_single_node_kraft_on_loopback() -> None:
    props = _props()
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:21002"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:21001,CONTROLLER://127.0.0.1:21002"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:21001"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == "/srv/k/data"
    for key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
        hosts = [part.rsplit(":", 1)[0].split("/")[-1].split("@")[-1] for part in props[key].split(",")]
        assert set(hosts) == {"127.0.0.1"}, key


def test_single_replica_internal_topics_and_no_auto_create() -> None:
    props = _props()
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "default.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "1"


def test_sixteen_mib_messages_end_to_end() -> None:
    props = _props()
    assert MAX_MESSAGE_BYTES == 16 * 1024 * 1024
    assert int(props["message.max.bytes"]) == MAX_MESSAGE_BYTES
    assert int(props["replica.fetch.max.bytes"]) >= MAX_MESSAGE_BYTES
    assert int(props["replica.fetch.response.max.bytes"]) >= MAX_MESSAGE_BYTES
    assert int(props["socket.request.max.bytes"]) > MAX_MESSAGE_BYTES


def test_pom_pins_a_kafka_4_release_and_the_matching_log4j() -> None:
    props = pom_properties()
    major, minor, *_ = (int(x) for x in props["kafka.version"].split("."))
    assert (major, minor) >= (4, 1)
    assert kafka_version() == props["kafka.version"]
    assert props["log4j.version"].startswith("2.")


def test_cluster_id_is_a_kafka_uuid() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_java_major() -> None:
    assert java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major('java version "1.8.0_392"') == 8
    assert java_major("command not found") is None
