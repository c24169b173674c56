"""The private stack of the outage tests: the project's own infra code under a temporary root, so stopping or
killing a service never touches the services others use."""

from __future__ import annotations

from pathlib import Path

from carspot.infra.outages import PrivateStack

POSTS_TOPIC, DLQ_TOPIC = "carspot.posts", "carspot.posts.dlq"


def start_stack(root: Path) -> PrivateStack:
    return PrivateStack(root=root, topics={POSTS_TOPIC: 2, DLQ_TOPIC: 1})


__all__ = ["PrivateStack", "start_stack"]
