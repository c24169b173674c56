"""The worker's Kubernetes probe: is this pod a member of the analyzers' consumer group?

A worker has no HTTP port, and what matters about it is whether it consumes: a worker whose loop is stuck stops
polling and Kafka drops it from the group after ``max.poll.interval.ms``; one that never joined (no broker,
wrong topic) is not in it either. The probe asks the group coordinator for the members and looks for one whose
client address is this pod's IP (``--host``, from the downward API's ``status.podIP``). Exit 0: a member;
1: not a member; 2: Kafka did not answer. Settings come from the environment, as the worker's do.

    python -m carspot.pipeline.probe --host "$POD_IP"
"""

from __future__ import annotations

import argparse
import sys

from carspot.pipeline import kafka_admin
from carspot.pipeline.settings import Settings


def is_member(state: kafka_admin.GroupState, *, host: str) -> bool:
    return any(m.host == host for m in state.members)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="this pod's IP as Kafka sees its connections")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for Kafka")
    args = parser.parse_args(argv)
    settings = Settings.load()
    try:
        state = kafka_admin.describe_group(
            settings.kafka_bootstrap,
            group=settings.consumer_group,
            topic=settings.posts_topic,
            timeout_ms=int(args.timeout * 1000),
        )
    except kafka_admin.KafkaUnavailable as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 2
    if is_member(state, host=args.host):
        return 0
    hosts = sorted({m.host for m in state.members}) or ["none"]
    print(f"{args.host} is not a member of {state.group} ({state.state}; members from {', '.join(hosts)})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
