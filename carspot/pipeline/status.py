"""``carspot status``: the state of a distributed deployment in one look, for the people who run it.

The analyzers' consumer group (members and the partitions each holds), its lag per partition, the dead letters
of a window by reason (read from the dead-letter topic itself), the last analysis the store holds, and the model
versions in use: the registry's current one (what workers swap to) and those that made the window's analyses.
A part that cannot be read (Kafka or the database down) is reported as an error beside the others, never hides
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from carspot.pipeline import kafka_admin
from carspot.pipeline.dlq import LetterFilter, by_reason, load_letters
from carspot.pipeline.settings import Settings
from carspot.store.queries import ModelVersionUse

_T = TypeVar("_T")


@dataclass(frozen=True)
class Status:
    """Everything ``carspot status`` shows; a part that failed is None with its error in ``errors``."""

    now: datetime
    since: datetime
    group: kafka_admin.GroupState | None
    lag: list[kafka_admin.PartitionLag] | None
    dead_letters: dict[str, int] | None
    last_analysis_at: datetime | None
    store_model_versions: list[ModelVersionUse] | None
    registry_version: str | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def total_lag(self) -> int | None:
        return None if self.lag is None else sum(p.lag for p in self.lag)

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "since": self.since.isoformat(),
            "group": None
            if self.group is None
            else {
                "name": self.group.group,
                "state": self.group.state,
                "members": [
                    {
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "host": m.host,
                        "partitions": list(m.partitions),
                    }
                    for m in self.group.members
                ],
            },
            "lag": None
            if self.lag is None
            else {
                "total": self.total_lag,
                "partitions": [
                    {"partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag} for p in self.lag
                ],
            },
            "dead_letters": None
            if self.dead_letters is None
            else {"total": sum(self.dead_letters.values()), "by_reason": self.dead_letters},
            "last_analysis_at": self.last_analysis_at.isoformat() if self.last_analysis_at else None,
            "model_versions": {
                "registry_current": self.registry_version,
                "in_store": None
                if self.store_model_versions is None
                else [
                    {
                        "model_version": u.model_version,
                        "mode": u.mode,
                        "analyses": u.analyses,
                        "last_analyzed_at": u.last_analyzed_at.isoformat(),
                    }
                    for u in self.store_model_versions
                ],
            },
            "errors": self.errors,
        }


def _part(name: str, errors: dict[str, str], read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except Exception as exc:  # one part down must not hide the others: reported, not swallowed
        first_line = (str(exc).strip().splitlines() or [""])[0]  # SQLAlchemy appends the SQL and a link
        errors[name] = f"{exc.__class__.__name__}: {first_line}"
        return None


def collect_status(settings: Settings, *, now: datetime, window: timedelta, timeout_s: float = 30.0) -> Status:
    """Read every part of the status from Kafka, the store and the model registry."""
    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    since = now - window
    errors: dict[str, str] = {}
    bootstrap, group, topic = settings.kafka_bootstrap, settings.consumer_group, settings.posts_topic
    timeout_ms = int(timeout_s * 1000)
    state = _part(
        "group", errors, lambda: kafka_admin.describe_group(bootstrap, group=group, topic=topic, timeout_ms=timeout_ms)
    )
    lag = _part(
        "lag", errors, lambda: kafka_admin.group_lag(bootstrap, group=group, topic=topic, timeout_ms=timeout_ms)
    )
    letters = _part(
        "dead_letters",
        errors,
        lambda: by_reason(
            load_letters(
                bootstrap,
                topic=settings.dlq_topic,
                where=LetterFilter(since=since, until=now),
                max_bytes=settings.kafka_max_message_bytes + (64 << 10),
                timeout_s=timeout_s,
            )
        ),
    )
    last, versions = _store_part(settings, since=since, now=now, errors=errors)
    registry = _part("registry", errors, lambda: _registry_version(settings))
    return Status(
        now=now,
        since=since,
        group=state,
        lag=lag,
        dead_letters=letters,
        last_analysis_at=last,
        store_model_versions=versions,
        registry_version=registry,
        errors=errors,
    )


def _store_part(
    settings: Settings, *, since: datetime, now: datetime, errors: dict[str, str]
) -> tuple[datetime | None, list[ModelVersionUse] | None]:
    from carspot.store.engine import create_engine_for
    from carspot.store.queries import last_analysis_at, model_versions

    def read() -> tuple[datetime | None, list[ModelVersionUse]]:
        engine = create_engine_for(settings.resolved_database_url)
        try:
            with engine.connect() as conn:
                return last_analysis_at(conn), model_versions(conn, since=since, until=now)
        finally:
            engine.dispose()

    found = _part("store", errors, read)
    return (None, None) if found is None else found


def _registry_version(settings: Settings) -> str | None:
    from carspot.classifier.registry import current_version

    return current_version(settings.model_dir)


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def render(status: Status) -> str:
    """The plain-text view of ``carspot status``."""
    lines: list[str] = []
    g = status.group
    if g is not None:
        lines.append(f"group          {g.group}: {g.state}, {len(g.members)} member(s)")
        for m in g.members:
            held = ",".join(str(p) for p in m.partitions) or "-"
            lines.append(f"  {m.client_id:<16} {m.host:<16} partitions {held:<12} {m.member_id}")
    if status.lag is not None:
        lines.append(f"lag            {status.total_lag} message(s) in all")
        for p in status.lag:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(f"  partition {p.partition:<3} committed {committed:>8}  end {p.end:>8}  lag {p.lag}")
    if status.dead_letters is not None:
        total = sum(status.dead_letters.values())
        lines.append(f"dead letters   {total} since {status.since.isoformat(timespec='seconds')}")
        lines.extend(f"  {reason:<24} {count}" for reason, count in status.dead_letters.items())
    if "store" not in status.errors:
        at = status.last_analysis_at
        when = f"{at.isoformat(timespec='seconds')} ({_ago(at, status.now)})" if at else "never"
        lines.append(f"last analysis  {when}")
    lines.append(f"model          registry current: {status.registry_version or 'none'}")
    for u in status.store_model_versions or ():
        last = _ago(u.last_analyzed_at, status.now)
        lines.append(f"  in store: {u.model_version} ({u.mode}) {u.analyses} analyses, last {last}")
    for part, error in status.errors.items():
        lines.append(f"error          {part}: {error}")
    return "\n".join(lines)
