"""The Post message: what goes on the wire comes back identical, and anything else is one DecodeError."""

import hashlib
import json
import struct
from datetime import UTC, datetime

import pytest

from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.message import DecodeError, Post

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def make_post(**overrides: object) -> Post:
    fields: dict[str, object] = {
        "post_id": "x:1",
        "source": "folder",
        "ingested_at": datetime(2026, 11, 22, 5, 0, tzinfo=UTC),
        "image_sha256": hashlib.sha256(JPEG).hexdigest(),
        "width": 640,
        "height": 480,
        "image": JPEG,
        "author": "@ana",
        "text": "new car! ✨",
        "url": "https://example.invalid/p/1",
        "posted_at": datetime(2026, 11, 21, 23, 59, tzinfo=UTC),
    }
    fields.update(overrides)
    return Post(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    post = make_post(mode="detector")
    assert Post.decode(post.encode()) == post


def test_the_campaign_travels_and_an_older_message_without_it_still_decodes() -> None:
    assert Post.decode(make_post(campaign="toyota").encode()).campaign == "toyota"
    plain = make_post()
    data = plain.encode()
    (size,) = struct.unpack_from(">I", data, 4)
    header = json.loads(data[8 : 8 + size])
    del header["campaign"]  # what a producer from before campaigns sent
    raw = json.dumps(header).encode()
    old = data[:4] + struct.pack(">I", len(raw)) + raw + data[8 + size :]
    assert Post.decode(old) == plain


def test_an_invalid_campaign_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="campaign"):
        make_post(campaign="two words")


def test_a_link_post_travels_without_image_bytes() -> None:
    post = make_post(image=None)
    decoded = Post.decode(post.encode())
    assert decoded.is_link and decoded.image is None
    assert decoded == post


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"CS",
        b"\x00" * 64,
        b"<html><body>not a post</body></html>",
        b"CSP\x02" + struct.pack(">I", 2) + b"{}",  # unknown version
        b"CSP\x01" + struct.pack(">I", 999) + b"{}",  # header length beyond the data
        b"CSP\x01" + struct.pack(">I", 4) + b"\xff\xfe\x00\x01",  # not UTF-8 JSON
        b"CSP\x01" + struct.pack(">I", 2) + b"[]",  # JSON but not an object
    ],
)
def test_garbage_raises_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        Post.decode(garbage)


def test_tampered_image_is_refused() -> None:
    data = bytearray(make_post().encode())
    data[-1] ^= 0xFF
    with pytest.raises(DecodeError, match="sha256"):
        Post.decode(bytes(data))


def reframe(encoded: bytes, old: bytes, new: bytes) -> bytes:
    """The same message with one header substring replaced and the length prefix fixed."""
    (length,) = struct.unpack_from(">I", encoded, 4)
    header = encoded[8 : 8 + length].replace(old, new)
    return encoded[:4] + struct.pack(">I", len(header)) + header + encoded[8 + length :]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b'"width":640', b'"width":"640"', "width"),
        (b'"post_id":"x:1"', b'"post_id":7', "post_id"),
        (b'"ingested_at":"2026-11-22T05:00:00+00:00"', b'"ingested_at":"yesterday"', "ingested_at"),
        (b'"has_image":true', b'"has_image":false', "has_image"),
    ],
)
def test_header_with_wrong_types_is_a_decode_error(old: bytes, new: bytes, field: str) -> None:
    encoded = make_post().encode()
    assert old in encoded
    with pytest.raises(DecodeError, match=field):
        Post.decode(reframe(encoded, old, new))


def test_naive_timestamps_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="time-zone"):
        make_post(ingested_at=datetime(2026, 1, 1))


def test_dead_letter_round_trip() -> None:
    letter = DeadLetter(
        stage="worker",
        reason="decode_error",
        detail="bad magic",
        original=b"\x00garbage",
        origin_topic="carspot.posts",
        origin_partition=3,
        origin_offset=42,
    )
    decoded = DeadLetter.decode(letter.encode())
    assert decoded == letter
    assert letter.key == b"carspot.posts/3/42"
