"""Builds the integration corpus: real scenes as many distinct posts, reposts, and every kind of bad input."""

from __future__ import annotations

import json
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SCENES = (
    "times-square.png",
    "street-000004.jpg",
    "street-000230.jpg",
    "dog.jpg",
    "bus.jpg",
    "person.jpg",
    "horses.jpg",
    "kite.jpg",
)


@dataclass(frozen=True)
class Corpus:
    jsonl: Path
    good: frozenset[str]  # post ids that must each end with exactly one analysis
    reposts: frozenset[str]  # good posts whose picture another post already carried
    bad: dict[str, str]  # post id -> a reason code the dead letter must carry

    @property
    def total(self) -> int:
        return len(self.good) + len(self.bad)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` with (almost) no pixel data: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_bad_inputs(folder: Path, scenes_dir: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the reason code CarSpot must give for it)."""
    folder.mkdir(parents=True, exist_ok=True)
    dog = (scenes_dir / "dog.jpg").read_bytes()
    files: dict[str, tuple[bytes | None, str]] = {
        "truncated.jpg": (dog[: len(dog) // 2], "truncated"),
        "zero.jpg": (b"", "empty"),
        "notes.jpg": (b"these are my notes, not a picture\n" * 20, "not_an_image"),
        "bomb.png": (png_claiming(30_000, 30_000), "decompression_bomb"),
        "page.jpg": (b"<!DOCTYPE html><html><body><img src=x></body></html>", "not_an_image"),
        "random.png": (random.Random(7).randbytes(4096), "not_an_image"),
        "cut.png": ((scenes_dir / "times-square.png").read_bytes()[:3000], "truncated"),
        "huge.jpg": (None, "too_large"),  # 50 MB, written sparse below
        "header-only.jpg": (dog[:200], "truncated"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for name, (data, reason) in files.items():
        path = folder / name
        if data is None:
            with path.open("wb") as handle:
                handle.write(dog[:1024])
                handle.truncate(50 * 2**20)
        else:
            path.write_bytes(data)
        out[name] = (path, reason)
    return out


def build_corpus(folder: Path, scenes_dir: Path, *, total: int = 200, reposts: int = 40, seed: int = 1) -> Corpus:
    """``total`` posts: distinct crops of the real scenes, reposts of some of them, and the bad inputs."""
    rng = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    bad_files = write_bad_inputs(folder / "bad", scenes_dir)
    lines: list[dict[str, object]] = []
    bad: dict[str, str] = {}
    for name, (path, reason) in bad_files.items():
        post_id = f"bad-{name}"
        bad[post_id] = reason
        lines.append({"post_id": post_id, "image": str(path), "author": "@mallory"})
    lines.append({"post_id": "bad-missing-file", "image": str(folder / "no-such-file.jpg")})
    bad["bad-missing-file"] = "unreadable"

    distinct = total - len(lines) - reposts
    originals: list[Path] = []
    sources = [Image.open(scenes_dir / name).convert("RGB") for name in SCENES]
    for i in range(distinct):
        scene = sources[i % len(sources)]
        w, h = scene.size
        left, top = rng.randint(0, w // 10), rng.randint(0, h // 10)
        crop = scene.crop((left, top, w - rng.randint(0, w // 10), h - rng.randint(0, h // 10)))
        path = images / f"post-{i:04d}.jpg"
        crop.save(path, quality=90)
        originals.append(path)
        lines.append(
            {
                "post_id": f"good-{i:04d}",
                "image": str(path),
                "author": f"@user{i % 17}",
                "text": f"look at this #{SCENES[i % len(SCENES)].split('.')[0]}",
                "posted_at": f"2026-11-{1 + i % 20:02d}T12:00:00+00:00",
            }
        )
    repost_ids = []
    for j in range(reposts):
        post_id = f"repost-{j:04d}"
        repost_ids.append(post_id)
        lines.append({"post_id": post_id, "image": str(originals[rng.randrange(len(originals))])})
    rng.shuffle(lines)
    jsonl = folder / "posts.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    good = frozenset(str(line["post_id"]) for line in lines) - bad.keys()
    return Corpus(jsonl=jsonl, good=good, reposts=frozenset(repost_ids), bad=bad)
