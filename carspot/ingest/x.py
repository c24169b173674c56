"""X/Twitter as a source, through tweepy and the API v2: filtered stream, or recent-search polling.

What a post becomes: one :class:`RawPost` per picture, ``post_id = "x:<tweet id>:<media key>"``. The wire
message carries one picture, and a post id per picture keeps de-duplication exact (a re-delivered tweet
is skipped picture by picture, and one bad picture of four dead-letters alone). Photos are fetched from
``url``; videos and animated GIFs contribute their ``preview_image_url``. Every fetch goes through the
injected ``fetch`` (the safe fetcher), lazily: a duplicate is never downloaded. A line or a tweet that
cannot be understood becomes a :class:`BrokenRecord` (dead-lettered), never an exception that ends the stream.

Two modes, one iterator (``XSource``):

* ``stream``: ``GET /2/tweets/search/stream`` in a background thread (tweepy's ``StreamingClient``, its
  documented ``on_*`` callbacks overridden). tweepy's own reconnect loop is switched off (``max_retries=0``
  and the callbacks disconnect), so reconnecting is ours: capped exponential backoff with jitter after a
  disconnect, a closed stream or a 5xx; after a 429 we wait until ``x-rate-limit-reset`` (read with a
  ``requests`` response hook on tweepy's public ``session``); 401/403 and other 4xx are fatal. On start with
  a checkpoint, the gap since the last handled tweet is caught up with recent search per rule
  (``since_id``) while the stream is already connected: overlaps are duplicates, skipped by post id.
* ``search``: ``GET /2/tweets/search/recent`` every ``interval_s`` with ``since_id``, every page
  (``next_token``), handed out oldest first; 429 waits for the reset, 5xx and network errors back off.

Checkpoint: the newest tweet id whose pictures were all handed to the consumer *and* the consumer asked for
the next item (so the producer loop finished them) is the "handled" mark. :meth:`XSource.commit_checkpoint`
stores it (the wiring calls it after the Kafka producer's flush, so a checkpoint never runs ahead of what
Kafka acknowledged). After a restart, ``since_id`` = the checkpoint: nothing older is fetched again (no
duplicates), nothing newer is skipped (no loss); anything in between is caught by post-id de-duplication.

Pointing tweepy elsewhere (tests, a proxy): tweepy hard-codes ``https://api.twitter.com``; :func:`rebase`
mounts a ``requests`` transport adapter on the client's public ``session`` that sends those requests to
``base_url`` instead. No tweepy internals are patched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import redis
import requests
import tweepy
from requests.adapters import HTTPAdapter

from carspot.ingest.fields import check_campaign
from carspot.ingest.sources import BrokenRecord, RawPost

logger = logging.getLogger("carspot.ingest.x")

SOURCE = "x"
X_API = "https://api.twitter.com"
EXPANSIONS = ["attachments.media_keys", "author_id"]
MEDIA_FIELDS = ["url", "preview_image_url", "type", "width", "height"]
TWEET_FIELDS = ["created_at", "attachments", "author_id", "entities"]
USER_FIELDS = ["username", "name"]


class XApiError(RuntimeError):
    """The API refused us in a way retrying cannot fix (bad token, no stream access, invalid rules)."""


# --- rules ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XRule:
    """A stream rule; its tag names the campaign the posts it finds are collected for (``posts.campaign``)."""

    value: str
    tag: str | None = None


def parse_rules(text: str) -> list[XRule]:
    """One rule per line, optionally tagged: ``[toyota] (#toyota OR @Toyota) has:images -is:retweet``.

    Blank lines and comments (``#`` followed by a space, or alone: a hashtag never has a space) are ignored.
    A tag is the campaign of the posts the rule finds, so it must be a valid campaign name
    (:func:`carspot.ingest.fields.check_campaign`).
    """
    rules: list[XRule] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line == "#" or line.startswith("# "):
            continue
        tag = None
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise ValueError(f"line {number}: unclosed [tag]")
            tag, line = line[1:end].strip() or None, line[end + 1 :].strip()
            try:
                check_campaign("tag", tag)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
        if not line:
            raise ValueError(f"line {number}: a tag without a rule")
        rules.append(XRule(line, tag))
    if len({r.value for r in rules}) != len(rules):
        raise ValueError("the same rule value appears twice")
    return rules


def load_rules(path: Path) -> list[XRule]:
    return parse_rules(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class RulesSync:
    added: list[XRule]
    removed: list[XRule]
    kept: list[XRule]


def sync_rules(client: tweepy.StreamingClient, wanted: Sequence[XRule], *, dry_run: bool = False) -> RulesSync:
    """Make the stream's rules exactly ``wanted``: delete the stale ones, then add the missing ones."""
    response = client.get_rules()
    current = {XRule(r.value, r.tag or None): r.id for r in (response.data or [])}
    wanted_set = set(wanted)
    stale = [rule for rule in current if rule not in wanted_set]
    missing = [rule for rule in wanted if rule not in current]
    kept = [rule for rule in wanted if rule in current]
    if not dry_run:
        if stale:
            client.delete_rules([current[rule] for rule in stale])
        if missing:
            added = client.add_rules([tweepy.StreamRule(value=r.value, tag=r.tag) for r in missing])
            errors = getattr(added, "errors", None)
            if errors:
                raise XApiError(f"X refused rules: {errors}")
    logger.info("stream rules: %d added, %d removed, %d kept", len(missing), len(stale), len(kept))
    return RulesSync(added=missing, removed=stale, kept=kept)


# --- clients ----------------------------------------------------------------------------------------------


class _RebaseAdapter(HTTPAdapter):
    """Sends requests for ``https://api.twitter.com`` to ``base_url`` instead (a requests transport adapter)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        if request.url and request.url.startswith(X_API):
            request.url = self.base_url + request.url[len(X_API) :]
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


def rebase(session: requests.Session, base_url: str) -> None:
    """Point a tweepy client's ``session`` at ``base_url`` (nothing changes for the default API address)."""
    if base_url.rstrip("/") != X_API:
        session.mount(X_API, _RebaseAdapter(base_url))


class _Redact(logging.Filter):
    """tweepy logs request headers at DEBUG, bearer token included: replace the token before any handler."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


def redact_token_in_logs(bearer_token: str) -> None:
    """Keep the bearer token out of tweepy's own log records (idempotent)."""
    for name in ("tweepy.client", "tweepy.streaming"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _Redact) and f.secret == bearer_token for f in target.filters):
            target.addFilter(_Redact(bearer_token))


def make_client(bearer_token: str, *, base_url: str = X_API) -> tweepy.Client:
    """An app-only v2 client answering raw dicts (we parse them ourselves, like the stream's lines)."""
    redact_token_in_logs(bearer_token)
    client = tweepy.Client(bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False)
    rebase(client.session, base_url)
    return client


def make_rules_client(bearer_token: str, *, base_url: str = X_API) -> tweepy.StreamingClient:
    redact_token_in_logs(bearer_token)
    client = tweepy.StreamingClient(bearer_token, wait_on_rate_limit=False, max_retries=0)
    rebase(client.session, base_url)
    return client


# --- tweets → posts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unit:
    """The posts of one tweet (or one broken record), handed out together; ``tweet_id`` for checkpoints."""

    tweet_id: int | None
    items: list[RawPost | BrokenRecord]


def tweet_units(
    payload: dict[str, Any], *, fetch: Callable[[str], bytes], ref: str, campaign: str | None = None
) -> list[_Unit]:
    """The posts of a v2 response (``data`` one tweet on the stream, a list in search), media joined from
    ``includes``. A tweet without pictures gives a unit without items (it still moves the checkpoint).

    The posts' campaign is ``campaign`` (a search for one tagged rule), else the tag of the stream's
    ``matching_rules`` (the first in sorted order when several tagged rules matched)."""
    if campaign is None:
        campaign = _rule_tag(payload)
    data = payload.get("data")
    tweets = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    includes = payload.get("includes") or {}
    media = {m.get("media_key"): m for m in includes.get("media") or [] if isinstance(m, dict)}
    users = {u.get("id"): u for u in includes.get("users") or [] if isinstance(u, dict)}
    units = []
    for tweet in tweets:
        try:
            units.append(_tweet_unit(tweet, media, users, fetch=fetch, ref=ref, campaign=campaign))
        except (KeyError, TypeError, ValueError) as exc:
            raw = json.dumps(tweet).encode()  # ASCII escapes: encodable whatever it holds
            units.append(_Unit(None, [BrokenRecord(0, f"malformed tweet: {exc}", raw, source=SOURCE, ref=ref)]))
    return units


def _tweet_unit(
    tweet: dict[str, Any],
    media: dict[Any, dict[str, Any]],
    users: dict[Any, dict[str, Any]],
    *,
    fetch: Callable[[str], bytes],
    ref: str,
    campaign: str | None,
) -> _Unit:
    tweet_id = str(tweet["id"])
    number = int(tweet_id)
    user = users.get(tweet.get("author_id"), {})
    username = user.get("username")
    created = tweet.get("created_at")
    posted_at = datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else None
    link = f"https://x.com/{username}/status/{tweet_id}" if username else f"https://x.com/i/web/status/{tweet_id}"
    items: list[RawPost | BrokenRecord] = []
    for key in (tweet.get("attachments") or {}).get("media_keys") or []:
        post_id = f"{SOURCE}:{tweet_id}:{key}"
        item = media.get(key)
        image_url = None
        if item is not None:
            image_url = item.get("url") if item.get("type") == "photo" else item.get("preview_image_url")
        if not isinstance(image_url, str) or not image_url:
            why = "not in includes.media" if item is None else f"{item.get('type')} without an image URL"
            raw = json.dumps({"tweet": tweet, "media": item}).encode()
            items.append(BrokenRecord(0, f"media {key}: {why}", raw, source=SOURCE, ref=ref, post_id=post_id))
            continue
        items.append(
            RawPost(
                post_id=post_id,
                source=SOURCE,
                author=f"@{username}" if username else tweet.get("author_id"),
                text=tweet.get("text"),
                url=link,
                posted_at=posted_at,
                image_ref=image_url,
                read_image=partial(fetch, image_url),
                campaign=campaign,
            )
        )
    return _Unit(number, items)


def _rule_tag(payload: dict[str, Any]) -> str | None:
    """The campaign of a stream message: its matching rules' tags, the first in sorted order."""
    rules = payload.get("matching_rules")
    tags = (
        sorted(r["tag"] for r in rules or () if isinstance(r, dict) and isinstance(r.get("tag"), str) and r["tag"])
        if isinstance(rules, list)
        else []
    )
    return tags[0] if tags else None


# --- checkpoints ------------------------------------------------------------------------------------------


class CheckpointStore(Protocol):
    def load(self) -> int | None: ...

    def save(self, tweet_id: int) -> None: ...


class InMemoryCheckpoint:
    def __init__(self, value: int | None = None) -> None:
        self.value = value
        self.saves = 0

    def load(self) -> int | None:
        return self.value

    def save(self, tweet_id: int) -> None:
        self.value = tweet_id
        self.saves += 1


class RedisCheckpoint:
    """``{prefix}x:since_id:{name}`` in Redis; only ever moves forward (a Lua-free compare in a transaction)."""

    def __init__(self, client: redis.Redis, *, name: str, prefix: str = "carspot:") -> None:
        self._client = client
        self.key = f"{prefix}x:since_id:{name}"

    def load(self) -> int | None:
        value = cast(bytes | None, self._client.get(self.key))
        return int(value) if value else None

    def save(self, tweet_id: int) -> None:
        def advance(pipe: redis.client.Pipeline) -> None:
            current = cast(bytes | None, pipe.get(self.key))
            if current is None or int(current) < tweet_id:
                pipe.multi()
                pipe.set(self.key, str(tweet_id))

        self._client.transaction(advance, self.key)


def checkpoint_name(mode: str, rules: Sequence[XRule], query: str | None) -> str:
    """A checkpoint per rule set or query: changing the rules starts from now, not from another set's mark."""
    text = "\n".join([mode, query or "", *sorted(r.value for r in rules)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the source -------------------------------------------------------------------------------------------


@dataclass
class XStats:
    connects: int = 0
    disconnects: int = 0  # streams that ended without being asked to (closed, reset, errors)
    keep_alives: int = 0
    malformed_lines: int = 0
    tweets: int = 0
    pictures: int = 0
    tweets_without_pictures: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    searches: int = 0
    waits: list[float] = field(default_factory=list)


class Backoff:
    """Capped exponential backoff with "equal jitter": uniformly in [d/2, d], d = min(cap, initial * 2^n)."""

    def __init__(self, *, initial_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.cap_s, self.initial_s * 2**self.failures)
        self.failures += 1
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


class XSource:
    """Iterate to get posts; :meth:`stop` (any thread) ends the iteration; :meth:`commit_checkpoint` after
    the sink's flush. Bounded for tests and benchmarks by the producer loop's ``max_posts`` and :meth:`stop`."""

    def __init__(
        self,
        *,
        bearer_token: str,
        fetch: Callable[[str], bytes],
        checkpoint: CheckpointStore,
        mode: str = "stream",
        rules: Sequence[XRule] = (),
        query: str | None = None,
        base_url: str = X_API,
        interval_s: float = 30.0,
        max_pages: int = 10,
        page_size: int = 100,
        backoff_initial_s: float = 1.0,
        backoff_cap_s: float = 320.0,
        rate_limit_max_wait_s: float = 900.0,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if mode not in ("stream", "search"):
            raise ValueError("mode must be 'stream' or 'search'")
        if mode == "search" and not query and not rules:
            raise ValueError("search mode needs a query (or rules, searched one by one)")
        self.mode = mode
        self.rules = list(rules)
        self.query = query
        self.stats = XStats()
        self._bearer_token = bearer_token
        self._fetch = fetch
        self._checkpoint = checkpoint
        self._base_url = base_url
        self._interval_s = interval_s
        self._max_pages = max_pages
        self._page_size = page_size
        self._backoff = Backoff(initial_s=backoff_initial_s, cap_s=backoff_cap_s, rng=rng)
        self._rate_limit_max_wait_s = rate_limit_max_wait_s
        self._clock = clock
        self._stop = threading.Event()
        self._queue: queue.Queue[_Unit] = queue.Queue(maxsize=queue_size)
        self._fatal: BaseException | None = None
        self._handled: int | None = None
        self._committed: int | None = None
        self._stream: _Stream | None = None
        self._client = make_client(bearer_token, base_url=base_url)

    # --- control ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.disconnect()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def handled_id(self) -> int | None:
        """The newest tweet id the consumer has finished with (not yet necessarily committed)."""
        return self._handled

    def commit_checkpoint(self) -> int | None:
        """Store the handled mark (call after the sink confirmed delivery); returns what was stored."""
        if self._handled is not None and (self._committed is None or self._handled > self._committed):
            self._checkpoint.save(self._handled)
            self._committed = self._handled
            logger.debug("checkpoint since_id=%d", self._handled)
        return self._committed

    # --- iteration ----------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[RawPost | BrokenRecord]:
        self._committed = self._checkpoint.load()
        units = self._stream_units() if self.mode == "stream" else self._search_units()
        try:
            for unit in units:
                yield from unit.items
                if unit.tweet_id is not None:  # resumed: the consumer is done with this tweet's pictures
                    self._handled = max(self._handled or 0, unit.tweet_id)
        finally:
            self.stop()

    def _search_units(self) -> Iterator[_Unit]:
        since = self._committed
        queries: list[tuple[str, str | None]] = (
            [(self.query, None)] if self.query else [(rule.value, rule.tag) for rule in self.rules]
        )
        while not self._stop.is_set():
            newest = since
            for query, campaign in queries:
                found = self._search(query, since, campaign=campaign)
                if found is None:
                    return
                units, top = found
                yield from units
                if top is not None:
                    newest = max(newest or 0, top)
            since = newest
            self._wait(self._interval_s)

    def _stream_units(self) -> Iterator[_Unit]:
        thread = threading.Thread(target=self._run_stream, name="carspot-x-stream", daemon=True)
        thread.start()
        if self._committed is not None:  # catch up the gap since the last run; overlaps are duplicates
            for rule in self.rules:
                found = self._search(rule.value, self._committed, campaign=rule.tag)
                if found is None:
                    return
                yield from found[0]
        while not self._stop.is_set():
            try:
                yield self._queue.get(timeout=0.1)
            except queue.Empty:
                fatal = self._fatal
                if fatal is not None:
                    raise fatal from None
                if not thread.is_alive():
                    return

    # --- search -------------------------------------------------------------------------------------------

    def _search(
        self, query: str, since_id: int | None, *, campaign: str | None = None
    ) -> tuple[list[_Unit], int | None] | None:
        """Every page newer than ``since_id``, oldest tweet first (their posts in ``campaign``); None when
        stopped while waiting."""
        pages: list[dict[str, Any]] = []
        token: str | None = None
        while len(pages) < self._max_pages:
            params: dict[str, Any] = {
                "query": query,
                "max_results": self._page_size,
                "expansions": EXPANSIONS,
                "media_fields": MEDIA_FIELDS,
                "tweet_fields": TWEET_FIELDS,
                "user_fields": USER_FIELDS,
            }
            if since_id is not None:
                params["since_id"] = since_id
            if token:
                params["next_token"] = token
            page = self._call(partial(self._client.search_recent_tweets, **params))
            if page is None:
                return None
            self.stats.searches += 1
            pages.append(page)
            token = (page.get("meta") or {}).get("next_token")
            if not token:
                break
        else:
            logger.warning(
                "search %r: more than %d pages since %s; older ones skipped", query, self._max_pages, since_id
            )
        units: list[_Unit] = []
        for page in reversed(pages):  # pages are newest first, and so are the tweets in a page
            units.extend(reversed(tweet_units(page, fetch=self._fetch, ref=f"x:search:{query}", campaign=campaign)))
        self._count(units)
        ids = [u.tweet_id for u in units if u.tweet_id is not None]
        return units, max(ids) if ids else None

    def _call(self, request: Callable[[], Any]) -> Any:
        """One API call with our retry policy; None when stopped meanwhile. 4xx other than 429 are fatal."""
        while not self._stop.is_set():
            try:
                result = request()
            except tweepy.TooManyRequests as exc:
                self.stats.rate_limited += 1
                self._wait(self._until_reset(getattr(exc, "reset_time", None)))
                continue
            except tweepy.TwitterServerError as exc:
                self.stats.server_errors += 1
                logger.warning("X answered %s; backing off", getattr(exc.response, "status_code", "5xx"))
                self._wait(self._backoff.next())
                continue
            except (tweepy.Unauthorized, tweepy.Forbidden, tweepy.BadRequest, tweepy.NotFound) as exc:
                raise XApiError(f"X refused the request: {exc}") from exc
            except (requests.RequestException, ValueError) as exc:  # network errors, a body that is not JSON
                logger.warning("X request failed (%s: %s); backing off", type(exc).__name__, exc)
                self._wait(self._backoff.next())
                continue
            self._backoff.reset()
            return result
        return None

    # --- stream -------------------------------------------------------------------------------------------

    def _run_stream(self) -> None:
        try:
            while not self._stop.is_set():
                stream = _Stream(self._bearer_token, on_line=self._on_line, stats=self.stats)
                rebase(stream.session, self._base_url)
                self._stream = stream
                self.stats.connects += 1
                stream.filter(
                    expansions=EXPANSIONS,
                    media_fields=MEDIA_FIELDS,
                    tweet_fields=TWEET_FIELDS,
                    user_fields=USER_FIELDS,
                )
                if self._stop.is_set():
                    return
                self.stats.disconnects += 1
                self._wait(self._after_disconnect(stream))
        except BaseException as exc:
            self._fatal = exc
            logger.error("X stream stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._stream = None

    def _after_disconnect(self, stream: _Stream) -> float:
        """How long to wait before reconnecting, from why the last connection ended."""
        if stream.received:
            self._backoff.reset()
        status = stream.status
        if status == 429:
            self.stats.rate_limited += 1
            return self._until_reset(stream.rate_limit_reset)
        if status is not None and 400 <= status < 500:
            raise XApiError(f"X refused the stream with HTTP {status}")
        if status is not None:
            self.stats.server_errors += 1
        if stream.exception is not None:
            raise stream.exception
        logger.info("X stream ended (%s); reconnecting", stream.why or f"HTTP {status}")
        return self._backoff.next()

    def _on_line(self, line: bytes) -> None:
        try:
            payload = json.loads(line)
            if not isinstance(payload, dict):
                raise ValueError(f"expected an object, got {type(payload).__name__}")
        except ValueError as exc:
            self.stats.malformed_lines += 1
            record = BrokenRecord(
                0, f"stream line is not a JSON object: {exc}", bytes(line), source=SOURCE, ref="x:stream"
            )
            self._put(_Unit(None, [record]))
            return
        if "data" not in payload:  # an error or system message on the stream: logged, nothing to ingest
            logger.warning("X stream message without data: %s", str(payload)[:500])
            return
        units = tweet_units(payload, fetch=self._fetch, ref="x:stream")
        self._count(units)
        for unit in units:
            self._put(unit)

    def _put(self, unit: _Unit) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(unit, timeout=0.2)
                return
            except queue.Full:
                continue

    # --- helpers ------------------------------------------------------------------------------------------

    def _count(self, units: list[_Unit]) -> None:
        for unit in units:
            if unit.tweet_id is None:
                continue
            self.stats.tweets += 1
            pictures = sum(isinstance(item, RawPost) for item in unit.items)
            self.stats.pictures += pictures
            self.stats.tweets_without_pictures += pictures == 0

    def _until_reset(self, reset: int | None) -> float:
        """Seconds until ``x-rate-limit-reset`` (epoch seconds) plus a little jitter; backoff without one."""
        if reset is None:
            return max(self._backoff.next(), 60.0)
        return min(self._rate_limit_max_wait_s, max(0.0, reset - self._clock()) + random.uniform(0.1, 1.0))

    def _wait(self, seconds: float) -> None:
        self.stats.waits.append(seconds)
        self._stop.wait(seconds)


class _Stream(tweepy.StreamingClient):
    """tweepy's stream with its documented callbacks overridden: lines go to ``on_line`` unparsed (a
    malformed line must not end the stream), and any end of the connection stops tweepy's own retry loop so
    that :class:`XSource` decides about reconnecting."""

    def __init__(self, bearer_token: str, *, on_line: Callable[[bytes], None], stats: XStats) -> None:
        super().__init__(bearer_token, wait_on_rate_limit=False, max_retries=0)
        self._on_line = on_line
        self._stats = stats
        self.status: int | None = None
        self.why: str | None = None
        self.exception: BaseException | None = None
        self.received = False
        self.rate_limit_reset: int | None = None
        self.session.hooks["response"].append(self._remember_limits)

    def _remember_limits(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        reset = response.headers.get("x-rate-limit-reset")
        if reset and reset.isdigit():
            self.rate_limit_reset = int(reset)

    def on_data(self, raw_data: bytes) -> None:
        self.received = True
        self._on_line(raw_data)

    def on_keep_alive(self) -> None:
        self._stats.keep_alives += 1

    def on_request_error(self, status_code: int) -> None:
        self.status = status_code
        logger.warning("X stream answered HTTP %d", status_code)
        self.disconnect()

    def on_connection_error(self) -> None:
        self.why = "connection error or timeout"
        self.disconnect()

    def on_closed(self, response: requests.Response) -> None:
        self.why = "closed by X"
        self.disconnect()

    def on_exception(self, exception: Exception) -> None:
        self.exception = exception
        logger.error("X stream callback failed: %s: %s", type(exception).__name__, exception)

    def on_disconnect(self) -> None:
        logger.debug("X stream disconnected")


__all__ = [
    "Backoff",
    "CheckpointStore",
    "InMemoryCheckpoint",
    "RedisCheckpoint",
    "RulesSync",
    "XApiError",
    "XRule",
    "XSource",
    "XStats",
    "checkpoint_name",
    "load_rules",
    "make_client",
    "make_rules_client",
    "parse_rules",
    "rebase",
    "sync_rules",
    "tweet_units",
]
