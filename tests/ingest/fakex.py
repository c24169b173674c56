"""A local X API v2 on 127.0.0.1, enough for tweepy's StreamingClient and Client as CarSpot uses them.

Endpoints: ``GET/POST /2/tweets/search/stream/rules``, ``GET /2/tweets/search/stream`` (chunked, keep-alive
newlines, scripted per connection: tweets, malformed lines, mid-stream drops, statuses such as 429 with
``x-rate-limit-reset``), ``GET /2/tweets/search/recent`` (``since_id``, ``next_token`` pagination, scripted
statuses) and ``/media/<key>.jpg`` (a distinct small JPEG per media key). Every handler is bounded in time.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from tests.ingest.factories import encode
from tests.ingest.localserver import Handler, LocalServer, Seen

TOKEN = "test-bearer-token"


def picture(key: str, size: tuple[int, int] = (96, 64)) -> bytes:
    """A distinct JPEG per key (noise seeded by the key): no two media share a sha256 or a pHash."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB").resize(size, Image.Resampling.NEAREST), "JPEG", quality=85)


@dataclass
class Connection:
    """What one stream connection does, in order: ("tweet", payload) · ("line", raw bytes) · ("keepalive",)
    · ("sleep", s) · ("drop",) cut mid-stream · ("end",) close cleanly. A ``status`` answers that instead."""

    actions: list[tuple[Any, ...]] = field(default_factory=list)
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeX:
    def __init__(self, server: LocalServer, *, hold_open_s: float = 3.0) -> None:
        self.server = server
        self.rules: dict[str, dict[str, str]] = {}
        self.tweets: list[dict[str, Any]] = []  # the search corpus (payload "data" + media + user)
        self.connections: list[Connection] = []
        self.search_statuses: list[tuple[int, dict[str, str]]] = []
        self.page_size_cap = 100
        self.hold_open_s = hold_open_s
        self.stream_connects = 0
        self.search_calls: list[dict[str, list[str]]] = []
        self._next_rule = 1000
        self._lock = threading.Lock()
        server.routes["/2/tweets/search/stream/rules"] = self._rules
        server.routes["/2/tweets/search/stream"] = self._stream
        server.routes["/2/tweets/search/recent"] = self._recent
        self.media_routes: set[str] = set()

    @property
    def base_url(self) -> str:
        return self.server.base

    # --- building tweets ----------------------------------------------------------------------------------

    def tweet(
        self, tweet_id: int, *, photos: int = 1, kind: str = "photo", user: str = "fan", text: str = "look!"
    ) -> dict[str, Any]:
        """A v2 payload (data + includes) with ``photos`` media, served by this server."""
        keys = [f"3_{tweet_id}_{n}" for n in range(photos)]
        media = []
        for key in keys:
            path = f"/media/{key}.jpg"
            if path not in self.server.routes:
                self.server.serve(path, picture(key))
            item: dict[str, Any] = {"media_key": key, "type": kind, "width": 96, "height": 64}
            item["url" if kind == "photo" else "preview_image_url"] = self.server.url(path)
            media.append(item)
        data: dict[str, Any] = {
            "id": str(tweet_id),
            "text": text,
            "author_id": f"u{user}",
            "created_at": "2026-05-01T10:00:00.000Z",
            "edit_history_tweet_ids": [str(tweet_id)],
        }
        if keys:
            data["attachments"] = {"media_keys": keys}
        return {"data": data, "includes": {"media": media, "users": [{"id": f"u{user}", "username": user}]}}

    # --- handlers -----------------------------------------------------------------------------------------

    def _authorized(self, h: Handler, seen: Seen) -> bool:
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            h.send_bytes(401, json.dumps({"title": "Unauthorized", "status": 401}).encode(), "application/json")
            return False
        return True

    def _rules(self, h: Handler, seen: Seen) -> None:
        if not self._authorized(h, seen):
            return
        with self._lock:
            if seen.method == "GET":
                body: dict[str, Any] = {"data": list(self.rules.values()), "meta": {"result_count": len(self.rules)}}
                if not self.rules:
                    body = {"meta": {"result_count": 0}}
            else:
                request = json.loads(seen.body)
                created = []
                for rule in request.get("add", []):
                    self._next_rule += 1
                    entry = {"id": str(self._next_rule), "value": rule["value"]}
                    if rule.get("tag"):
                        entry["tag"] = rule["tag"]
                    self.rules[entry["id"]] = entry
                    created.append(entry)
                for rule_id in request.get("delete", {}).get("ids", []):
                    self.rules.pop(str(rule_id), None)
                body = {"data": created, "meta": {"summary": {"created": len(created)}}}
        h.send_bytes(200 if seen.method == "GET" else 201, json.dumps(body).encode(), "application/json")

    def _stream(self, h: Handler, seen: Seen) -> None:
        if not self._authorized(h, seen):
            return
        with self._lock:
            self.stream_connects += 1
            connection = self.connections.pop(0) if self.connections else Connection([("hold",)])
        if connection.status is not None:
            h.send_bytes(connection.status, b'{"title":"error"}', "application/json", connection.headers)
            return
        h.start_chunked()
        for action in connection.actions:
            kind = action[0]
            if kind == "tweet":
                h.chunk(json.dumps(action[1]).encode() + b"\r\n")
            elif kind == "line":
                h.chunk(action[1] + b"\r\n")
            elif kind == "keepalive":
                h.chunk(b"\r\n")
            elif kind == "sleep":
                time.sleep(action[1])
            elif kind == "drop":
                h.drop()
                return
            elif kind == "hold":  # keep-alives until the client goes away, bounded
                deadline = time.monotonic() + self.hold_open_s
                while time.monotonic() < deadline:
                    h.chunk(b"\r\n")
                    time.sleep(0.05)
        h.end_chunked()
        h.close_connection = True

    def _recent(self, h: Handler, seen: Seen) -> None:
        if not self._authorized(h, seen):
            return
        with self._lock:
            self.search_calls.append(seen.query)
            if self.search_statuses:
                status, headers = self.search_statuses.pop(0)
                h.send_bytes(status, b'{"title":"error"}', "application/json", headers)
                return
            since = int(seen.query.get("since_id", ["0"])[0])
            size = min(int(seen.query.get("max_results", ["10"])[0]), self.page_size_cap)
            offset = int(seen.query.get("next_token", ["0"])[0] or 0)
            matching = sorted(
                (t for t in self.tweets if int(t["data"]["id"]) > since), key=lambda t: -int(t["data"]["id"])
            )
        page = matching[offset : offset + size]
        body: dict[str, Any] = {"meta": {"result_count": len(page)}}
        if page:
            body["data"] = [t["data"] for t in page]
            body["includes"] = {
                "media": [m for t in page for m in t["includes"]["media"]],
                "users": [u for t in page for u in t["includes"]["users"]],
            }
            body["meta"].update(newest_id=page[0]["data"]["id"], oldest_id=page[-1]["data"]["id"])
        if offset + size < len(matching):
            body["meta"]["next_token"] = str(offset + size)
        h.send_bytes(200, json.dumps(body).encode(), "application/json")
