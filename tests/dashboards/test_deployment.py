"""docker-compose.yml publishes nothing beyond the host's loopback, and says how the first admin is made."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

COMPOSE = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")


def test_every_published_port_is_bound_to_the_hosts_loopback() -> None:
    published = [
        mapping.strip().strip("'\"")
        for block in re.findall(r"^\s*ports:\s*\[([^\]]*)\]", COMPOSE, flags=re.MULTILINE)
        for mapping in block.split(",")
        if mapping.strip()
    ]
    published += re.findall(r"^\s*-\s*['\"]?(\S+:\d+)['\"]?\s*$", COMPOSE.split("ports:", 1)[-1], flags=re.MULTILINE)
    assert "8080" in " ".join(published), "the dashboard's port mapping was not found"
    assert [p for p in published if not p.startswith("127.0.0.1:")] == []


def test_the_first_admin_step_is_written_beside_the_dashboard() -> None:
    assert "users add admin --role admin" in COMPOSE
