"""`carspot status` and `carspot dlq list | show | replay`: what the people who run CarSpot look at and do.

Thin over `carspot.pipeline.status` and `carspot.pipeline.dlq`. Kafka or the database unreachable, a bad id or
a bad time is one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from carspot.cli.common import current_settings, database_url, print_json

if TYPE_CHECKING:
    from carspot.pipeline.dlq import LetterFilter, StoredLetter

app = typer.Typer()
dlq_app = typer.Typer(help="Dead letters: list them, show one, replay chosen ones after a fix.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DETAIL_WIDTH = 60

Since = Annotated[
    str | None, typer.Option(help="From this long ago (90m, 24h, 7d) or this ISO time (2026-12-06T08:00Z).")
]
Until = Annotated[str | None, typer.Option(help="Before this ISO time (default: now).")]
Reasons = Annotated[list[str] | None, typer.Option("--reason", help="Only this reason (repeat for several).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def parse_time(text: str, *, now: datetime) -> datetime:
    """``90m`` / ``24h`` / ``7d`` / ``2w`` before ``now``, or an ISO 8601 time (UTC when it names no zone)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a duration (24h, 7d) nor an ISO time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@app.command()
def status(since: Since = "24h", as_json: AsJson = False) -> None:
    """Consumer-group members, lag per partition, dead letters by reason, last analysis, model versions."""
    from carspot.pipeline.status import collect_status, render

    now = datetime.now(UTC)
    try:
        window = now - parse_time(since or "24h", now=now)
        database_url()  # said on stderr, as every command using the database does
        result = collect_status(current_settings(), now=now, window=window)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        print_json(result.as_json())
    else:
        typer.echo(render(result))
    if result.errors:
        raise typer.Exit(1)


def _filter(*, ids: list[str] | None, reasons: list[str] | None, since: str | None, until: str | None) -> LetterFilter:
    from carspot.pipeline.dlq import LetterFilter, parse_letter_id

    now = datetime.now(UTC)
    for letter_id in ids or ():
        parse_letter_id(letter_id)  # a clear error before any Kafka call
    return LetterFilter(
        reasons=frozenset(reasons or ()),
        since=parse_time(since, now=now) if since else None,
        until=parse_time(until, now=now) if until else None,
        ids=frozenset(ids or ()),
    )


def _load(where: LetterFilter) -> list[StoredLetter]:
    from carspot.pipeline.dlq import load_letters
    from carspot.pipeline.kafka_admin import KafkaUnavailable

    s = current_settings()
    try:
        return load_letters(
            s.kafka_bootstrap, topic=s.dlq_topic, where=where, max_bytes=s.kafka_max_message_bytes + (64 << 10)
        )
    except KafkaUnavailable as exc:
        raise _fail(str(exc)) from exc


@dlq_app.command("list")
def dlq_list(
    reason: Reasons = None,
    since: Since = "24h",
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many (the newest).")] = 200,
    as_json: AsJson = False,
) -> None:
    """The dead letters of a window (default: the last 24 h), oldest first, with their reason and detail."""
    from carspot.pipeline.dlq import summary_row

    try:
        where = _filter(ids=None, reasons=reason, since=since, until=until)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    letters = sorted(_load(where), key=lambda s: (s.timestamp, s.partition, s.offset))[-limit:]
    rows = [summary_row(s) for s in letters]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'ID':<10} {'TIME (UTC)':<20} {'STAGE':<7} {'REASON':<22} {'POST':<20} DETAIL")
    for r in rows:
        detail = " ".join(str(r["detail"] or "").split())
        if len(detail) > _DETAIL_WIDTH:
            detail = detail[: _DETAIL_WIDTH - 1] + "…"
        when = r["time"][:19].replace("T", " ")
        post = str(r["post_id"] or "-")[:20]
        typer.echo(f"{r['id']:<10} {when:<20} {r['stage'] or '-':<7} {r['reason']:<22} {post:<20} {detail}")


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="PARTITION:OFFSET, as `dlq list` shows")],
) -> None:
    """One dead letter: its error, where it came from, its original's header; the bytes only as size and sha256."""
    from carspot.pipeline.dlq import describe

    try:
        where = _filter(ids=[letter_id], reasons=None, since=None, until=None)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    found = _load(where)
    if not found:
        raise _fail(f"no dead letter {letter_id} in {current_settings().dlq_topic}")
    print_json(describe(found[0]))


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Letters to replay (PARTITION:OFFSET).")
    ] = None,
    reason: Reasons = None,
    since: Annotated[str | None, typer.Option(help="Letters from this long ago (24h) or this ISO time.")] = None,
    until: Until = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Every letter the topic holds.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Say what would be sent; send nothing.")] = False,
    as_json: AsJson = False,
) -> None:
    """Send chosen letters' original posts back to the posts topic (after a fix). Idempotent: a post already
    stored is skipped, and the workers' writes absorb any resend; a truncated or non-post letter is refused."""
    from sqlalchemy.exc import SQLAlchemyError

    from carspot.pipeline.app import open_store
    from carspot.pipeline.dlq import plan_replay, replay, replay_report
    from carspot.pipeline.kafka_admin import KafkaReplaySink, KafkaUnavailable

    if not (ids or reason or since or until or all_letters):
        raise _fail("choose what to replay: IDs, --reason, --since/--until, or --all")
    try:
        where = _filter(ids=ids, reasons=reason, since=since, until=until)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    s = current_settings()
    letters = _load(where)
    store = open_store(database_url(), mode_for=lambda post: post.mode or s.mode.value)
    try:
        decisions = plan_replay(letters, stored_posts=store.stored_posts)
    except SQLAlchemyError as exc:  # which posts are stored decides what is sent: no guess without the database
        raise _fail(f"cannot read the stored posts: {exc.__class__.__name__}: {exc}") from exc
    try:
        sink = KafkaReplaySink(
            bootstrap=s.kafka_bootstrap,
            topic=s.posts_topic,
            max_message_bytes=s.kafka_max_message_bytes,
            compression=s.kafka_compression,
        )
        try:
            sent = replay(decisions, sink=sink, dlq_topic=s.dlq_topic, dry_run=dry_run)
        finally:
            sink.close()
    except KafkaUnavailable as exc:
        raise _fail(str(exc)) from exc
    report = replay_report(decisions, sent=sent, dry_run=dry_run)
    if as_json:
        print_json(report)
        return
    verb = "would send" if dry_run else "sent"
    typer.echo(f"{len(decisions)} letter(s): {verb} {sent} to {s.posts_topic}")
    for action, count in report["actions"].items():
        typer.echo(f"  {action:<16} {count}")
    for row in report["letters"]:
        if row["action"] != "send":
            typer.echo(f"  {row['id']:<10} {row['action']:<16} {row['post_id'] or '-'}: {row['detail']}")
