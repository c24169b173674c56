"""Reading dead letters and re-driving the chosen ones into the posts topic after a fix.

A stored letter's id is where it sits in the dead-letter topic, ``PARTITION:OFFSET``: stable for as long as
Kafka keeps the record. A replay sends the letter's original message unchanged (same bytes, key = post id, so
the same partition and per-post order as ingest gave it) with headers naming the letter it came from. It is
idempotent by construction:

- only a letter whose original decodes as a whole Post today is sent (an ingest-stage letter holds a raw
  picture or input line, a truncated one only a prefix: both are refused with the reason);
- a post already stored with that picture is skipped (``already_stored``): a second replay sends nothing;
- one post is sent once per replay however many letters it has (``duplicate``);
- what is sent and not yet stored meets the worker's idempotent writes (post id and analysis keys ``ON
  CONFLICT DO NOTHING``, an analysed picture linked not re-analysed), so even a resend changes no row.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from carspot.pipeline import kafka_admin
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.message import DecodeError, Post

UNDECODABLE = "undecodable"
"""The reason shown for a record on the dead-letter topic that is not a CarSpot dead letter."""
REPLAY_OF_HEADER = "carspot-replay-of"
REPLAY_REASON_HEADER = "carspot-replay-reason"


class LetterIdError(ValueError):
    """Not a dead-letter id (``PARTITION:OFFSET``)."""


def parse_letter_id(text: str) -> tuple[int, int]:
    """``"0:42"`` -> (0, 42)."""
    partition, sep, offset = text.strip().partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise LetterIdError(f"not a dead-letter id: {text!r} (expected PARTITION:OFFSET, e.g. 0:42)")
    return int(partition), int(offset)


def letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A record of the dead-letter topic: its id and time, and the letter (None when it does not decode)."""

    partition: int
    offset: int
    timestamp: datetime
    letter: DeadLetter | None
    error: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def id(self) -> str:
        return letter_id(self.partition, self.offset)

    @property
    def reason(self) -> str:
        return self.letter.reason if self.letter is not None else UNDECODABLE


def stored_letter(
    *, partition: int, offset: int, timestamp: datetime, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
) -> StoredLetter:
    """Decode one record of the dead-letter topic; a record that is not a dead letter is kept, marked."""
    try:
        letter: DeadLetter | None = DeadLetter.decode(value)
        error = None
    except DecodeError as exc:
        letter, error = None, str(exc)
    return StoredLetter(
        partition=partition, offset=offset, timestamp=timestamp, letter=letter, error=error, headers=tuple(headers)
    )


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters to show or replay: by reason, by Kafka time ``[since, until)``, by id (all when empty)."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")

    def matches(self, stored: StoredLetter) -> bool:
        return (
            (not self.reasons or stored.reason in self.reasons)
            and (self.since is None or stored.timestamp >= self.since)
            and (self.until is None or stored.timestamp < self.until)
            and (not self.ids or stored.id in self.ids)
        )


def load_letters(
    bootstrap: str, *, topic: str, where: LetterFilter, max_bytes: int = 32 << 20, timeout_s: float = 60.0
) -> list[StoredLetter]:
    """The letters of the dead-letter topic that ``where`` selects (by id: only those records are read; else
    the time window, from Kafka's time index), oldest first per partition."""
    if where.ids:
        places = sorted(parse_letter_id(i) for i in where.ids)
        records = kafka_admin.read_records(bootstrap, topic=topic, at=places, timeout_s=timeout_s, max_bytes=max_bytes)
    else:
        records = list(
            kafka_admin.read_window(
                bootstrap, topic=topic, since=where.since, until=where.until, timeout_s=timeout_s, max_bytes=max_bytes
            )
        )
    letters = (
        stored_letter(partition=r.partition, offset=r.offset, timestamp=r.timestamp, value=r.value, headers=r.headers)
        for r in records
    )
    return [s for s in letters if where.matches(s)]


def by_reason(letters: Iterable[StoredLetter]) -> dict[str, int]:
    """Counts per reason, most frequent first."""
    return dict(Counter(s.reason for s in letters).most_common())


def summary_row(stored: StoredLetter) -> dict[str, Any]:
    """One line of ``dlq list``."""
    letter = stored.letter
    return {
        "id": stored.id,
        "time": stored.timestamp.isoformat(),
        "stage": letter.stage if letter else None,
        "reason": stored.reason,
        "post_id": letter.post_id if letter else None,
        "source": letter.source if letter else None,
        "detail": letter.detail if letter else stored.error,
        "original_bytes": len(letter.original) if letter else None,
        "truncated": letter.truncated if letter else None,
    }


def describe(stored: StoredLetter) -> dict[str, Any]:
    """Everything ``dlq show`` prints: the error, where it came from, the original's own header when it is a
    post message, and a digest (never the bytes) of what it carries."""
    out: dict[str, Any] = {"id": stored.id, "time": stored.timestamp.isoformat(), "reason": stored.reason}
    out["kafka_headers"] = {k: v.decode("utf-8", "backslashreplace") for k, v in stored.headers}
    if stored.letter is None:
        out["error"] = stored.error
        return out
    letter = stored.letter
    out["letter"] = letter.as_json()
    original = letter.original
    info: dict[str, Any] = {"bytes": len(original), "sha256": hashlib.sha256(original).hexdigest()}
    post = _as_post(original) if original else None
    if isinstance(post, Post):
        info["kind"] = "post message"
        info["post"] = post_header(post)
    else:
        info["kind"] = _kind_of(original)
        if post is not None:
            info["not_a_post"] = post
    out["original"] = info
    return out


def post_header(post: Post) -> dict[str, Any]:
    """A post's fields as sent, with the size of its picture instead of the picture."""
    return {
        "post_id": post.post_id,
        "source": post.source,
        "ingested_at": post.ingested_at.isoformat(),
        "posted_at": post.posted_at.isoformat() if post.posted_at else None,
        "author": post.author,
        "text": post.text,
        "url": post.url,
        "mode": post.mode,
        "image_sha256": post.image_sha256,
        "width": post.width,
        "height": post.height,
        "image_bytes": len(post.image) if post.image else 0,
    }


def _as_post(data: bytes) -> Post | str:
    """The original decoded as a Post, or why not."""
    try:
        return Post.decode(data)
    except DecodeError as exc:
        return str(exc)


def _kind_of(data: bytes) -> str:
    if not data:
        return "empty"
    for magic, kind in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"RIFF", "RIFF/WebP")):
        if data.startswith(magic):
            return f"{kind} bytes"
    if data.startswith(b"CSP"):
        return "post message (does not decode)"
    return "bytes"


# --- replay ------------------------------------------------------------------------------------------------
SEND = "send"


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    """What a replay does with one letter: ``send``, or skip it for the reason given."""

    id: str
    reason: str
    post_id: str | None
    action: str  # "send" | "already_stored" | "duplicate" | "post_id_taken" | "not_a_post" | "truncated"
    detail: str = ""
    post: Post | None = field(default=None, repr=False)
    original: bytes = field(default=b"", repr=False)


StoredPosts = Callable[[Sequence[str]], dict[str, str]]
"""Given post ids, those already stored, with their picture's sha256 (``app.open_store(...).stored_posts``)."""


def plan_replay(letters: Sequence[StoredLetter], *, stored_posts: StoredPosts) -> list[ReplayDecision]:
    """Decide, letter by letter, what a replay sends; nothing is sent here."""
    candidates: list[tuple[StoredLetter, Post | str]] = []
    for stored in letters:
        letter = stored.letter
        if letter is None:
            candidates.append((stored, f"not a dead letter: {stored.error}"))
        elif letter.truncated:
            candidates.append((stored, "truncated"))
        else:
            candidates.append((stored, _as_post(letter.original)))
    known = stored_posts(sorted({p.post_id for _, p in candidates if isinstance(p, Post)}))
    seen: set[str] = set()
    out: list[ReplayDecision] = []
    for item, post in candidates:
        post_id = item.letter.post_id if item.letter else None
        if post == "truncated":
            size = item.letter.original_size if item.letter else None
            out.append(_skip(item, post_id, "truncated", f"the letter kept a prefix of {size} bytes"))
        elif isinstance(post, str):
            letter = item.letter
            if letter is not None and letter.stage != "worker":
                where = letter.image_ref or "its source"
                post = f"an {letter.stage} letter holds the raw input, not a post: ingest {where} again"
            out.append(_skip(item, post_id, "not_a_post", post))
        elif known.get(post.post_id) == post.image_sha256:
            out.append(_skip(item, post.post_id, "already_stored", "the post and its picture are stored"))
        elif post.post_id in known:
            detail = f"the post id is stored with picture {known[post.post_id][:12]}"
            out.append(_skip(item, post.post_id, "post_id_taken", detail))
        elif post.post_id in seen:
            out.append(_skip(item, post.post_id, "duplicate", "an earlier letter of this replay sends it"))
        else:
            seen.add(post.post_id)
            assert item.letter is not None  # a decoded post came from a letter
            out.append(
                ReplayDecision(
                    id=item.id,
                    reason=item.reason,
                    post_id=post.post_id,
                    action=SEND,
                    post=post,
                    original=item.letter.original,
                )
            )
    return out


def _skip(stored: StoredLetter, post_id: str | None, action: str, detail: str) -> ReplayDecision:
    return ReplayDecision(id=stored.id, reason=stored.reason, post_id=post_id, action=action, detail=detail)


class ReplaySink(Protocol):
    def send(self, *, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None: ...


def replay(decisions: Sequence[ReplayDecision], *, sink: ReplaySink, dlq_topic: str, dry_run: bool = False) -> int:
    """Send every ``send`` decision's original, unchanged, keyed by its post id; returns how many were sent."""
    sent = 0
    for decision in decisions:
        if decision.action != SEND or decision.post is None:
            continue
        if not dry_run:
            partition, offset = parse_letter_id(decision.id)
            headers = [
                (REPLAY_OF_HEADER, f"{dlq_topic}/{partition}/{offset}".encode()),
                (REPLAY_REASON_HEADER, decision.reason.encode()),
            ]
            sink.send(key=decision.post.post_id.encode(), value=decision.original, headers=headers)
        sent += 1
    return sent


def replay_report(decisions: Sequence[ReplayDecision], *, sent: int, dry_run: bool) -> dict[str, Any]:
    """What ``dlq replay`` prints: counts per action, and each letter's decision."""
    return {
        "dry_run": dry_run,
        "sent": sent,
        "actions": dict(Counter(d.action for d in decisions).most_common()),
        "letters": [
            {"id": d.id, "reason": d.reason, "post_id": d.post_id, "action": d.action, "detail": d.detail}
            for d in decisions
        ],
    }
