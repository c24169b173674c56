"""The filters of a dashboard view, read from and written back to the URL's query, so a view can be shared.

Parameters (all optional)::

    days=14            the window: the last N days up to now (1..366; default 14)
    since=, until=     an explicit window instead: dates (UTC midnight) or ISO 8601 with a timezone
    source=x           posts from this source only (x, http, folder, jsonl)
    campaign=toyota    posts of this campaign only
    mode=detector      analyses in this mode only
    min_confidence=0.5 an image whose best make scores below it counts as unidentified (apart)

A bad value answers 422 with what was expected; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import HTTPException, Query

from carspot.store.queries import Filters

DEFAULT_DAYS: Final = 14
MAX_DAYS: Final = 366


@dataclass(frozen=True, slots=True)
class View:
    """A window and the store filters, plus the raw parameters to rebuild the URL."""

    since: datetime
    until: datetime
    filters: Filters
    params: dict[str, str]

    def query(self, **changes: str | None) -> str:
        """The query string of this view with ``changes`` (None removes a parameter)."""
        merged = dict(self.params)
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return urlencode(sorted(merged.items()))

    def shifted(self, *, since: datetime, until: datetime) -> View:
        return replace(self, since=since, until=until)


def parse_instant(name: str, value: str) -> datetime:
    """An ISO 8601 datetime with a timezone, or a date meaning 00:00 UTC; 422 otherwise (never guessed)."""
    raw = value.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise HTTPException(
            status_code=422,
            detail=f"{name} must be an ISO 8601 date (2026-11-16) or datetime with a timezone "
            f"(2026-11-16T08:00:00Z), got {value!r}",
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise HTTPException(status_code=422, detail=f"{name} must include a timezone (e.g. Z or +01:00), got {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T05:00+14:00 is before the first representable UTC instant
        raise HTTPException(status_code=422, detail=f"{name} lies outside the supported dates, got {value!r}") from None


def read_view(
    *,
    now: datetime,
    days: int | str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    campaign: str | None,
    mode: str | None,
    min_confidence: str | None,
) -> View:
    """The view the query asks for (``now`` ends a window given in days). Empty values (a form's "any") are
    absent values."""
    params: dict[str, str] = {}
    days = _days(days)
    end = parse_instant("until", until) if until else now
    if since:
        start = parse_instant("since", since)
        params["since"] = since
        if until:
            params["until"] = until
    else:
        span = days if days is not None else DEFAULT_DAYS
        try:
            start = end - timedelta(days=span)
        except OverflowError:
            raise HTTPException(422, "the window lies outside the supported dates") from None
        if days is not None:
            params["days"] = str(days)
        if until:
            params["until"] = until
    if end <= start:
        raise HTTPException(422, "until must be after since")
    if end - start > timedelta(days=MAX_DAYS):
        raise HTTPException(422, f"the window may span at most {MAX_DAYS} days")
    for key, value in (("source", source), ("campaign", campaign), ("mode", mode)):
        if value:
            params[key] = value
    filters = read_filters(source=source, campaign=campaign, mode=mode, min_confidence=min_confidence)
    if filters.min_confidence is not None:
        params["min_confidence"] = f"{filters.min_confidence:g}"
    return View(since=start, until=end, filters=filters, params=params)


def read_filters(*, source: str | None, campaign: str | None, mode: str | None, min_confidence: str | None) -> Filters:
    """The filters besides the window (the JSON APIs keep their own window rules); a bad value is a 422."""
    try:
        return Filters(
            mode=mode or None,
            source=source or None,
            campaign=campaign or None,
            min_confidence=_confidence(min_confidence),
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _days(value: int | str | None) -> int | None:
    """A whole number of days in 1..MAX_DAYS, or None (absent or empty: the form's "custom" window)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise HTTPException(422, f"days must be a whole number in 1..{MAX_DAYS}, got {value!r}") from None
    if not 1 <= parsed <= MAX_DAYS:
        raise HTTPException(422, f"days must be in 1..{MAX_DAYS}, got {value!r}")
    return parsed


def _confidence(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        parsed = float(value)
    except ValueError:
        raise HTTPException(422, f"min_confidence must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= parsed <= 1.0:
        raise HTTPException(422, f"min_confidence must be a number in [0, 1], got {value!r}")
    return parsed or None


DaysParam = Annotated[
    str | None, Query(max_length=8, description=f"the last N days (1..{MAX_DAYS}); default {DEFAULT_DAYS}")
]
"""A string, read by :func:`read_view`: the form's "custom (since/until)" choice sends it empty."""
SinceParam = Annotated[str | None, Query(description="window start: a date (UTC) or ISO 8601 with a timezone")]
UntilParam = Annotated[str | None, Query(description="window end (exclusive); default now")]
SourceParam = Annotated[str | None, Query(max_length=512, description="posts of this source only")]
CampaignParam = Annotated[str | None, Query(max_length=64, description="posts of this campaign only")]
ModeParam = Annotated[str | None, Query(description="analyses in this mode only: standard, region-search, detector")]
ConfidenceParam = Annotated[
    str | None, Query(description="0..1: below it, an image's best make counts as unidentified")
]


@dataclass(frozen=True)
class ViewQuery:
    """The view's query parameters as sent: a FastAPI dependency (``Annotated[ViewQuery, Depends()]``) that every
    page and API taking the whole view shares, read by `read` (one parameter list, one meaning)."""

    days: DaysParam = None
    since: SinceParam = None
    until: UntilParam = None
    source: SourceParam = None
    campaign: CampaignParam = None
    mode: ModeParam = None
    min_confidence: ConfidenceParam = None

    def read(self, *, now: datetime, default_days: int | None = None) -> View:
        """`read_view` of these values; ``default_days`` fills in ``days`` when neither it nor ``since`` is given
        (so the view's links carry it), else `DEFAULT_DAYS` applies unsaid."""
        days = self.days
        if default_days is not None and not days and not self.since:
            days = str(default_days)
        return read_view(
            now=now,
            days=days,
            since=self.since,
            until=self.until,
            source=self.source,
            campaign=self.campaign,
            mode=self.mode,
            min_confidence=self.min_confidence,
        )
