"""Real pictures for the ingest tests, made with Pillow in memory (and real scenes from the shared folder)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED = (220, 20, 20)
BLUE = (20, 20, 220)
GREEN = (20, 200, 20)


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """An RGB picture whose left half is ``left`` and right half ``right``: shows rotations and flips."""
    im = Image.new("RGB", size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def jpeg_with_orientation(orientation: int, size: tuple[int, int] = (400, 200)) -> bytes:
    """A JPEG stored sideways, as phones write them, with the EXIF tag saying how to turn it upright."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(halves(size, RED, BLUE), "JPEG", quality=95, exif=exif.tobytes())


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Incompressible pixels: big files and big JPEGs."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (correct CRCs) claiming ``width`` x ``height`` RGB, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def animated_gif(colours: list[tuple[int, int, int]], size: tuple[int, int] = (64, 48)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sparse_file(path: Path, size: int, head: bytes = b"\xff\xd8\xff\xe0") -> Path:
    """A file of ``size`` bytes that takes no disk space (truncate), starting with ``head``."""
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def random_bytes(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)
