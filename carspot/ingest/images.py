"""Turn untrusted bytes into one small, predictable JPEG, or refuse them with a reason.

Everything downstream (Kafka message limits, the detector, the classifier, the sha256 de-duplication) relies
on the same shape of picture: 8-bit sRGB RGB, upright, longer side at most ``max_side``, baseline JPEG with
no metadata. Refusals raise an :mod:`carspot.ingest.errors` ``ImageError`` whose ``reason`` goes to the DLQ.

The order of checks is chosen so the cheap ones run first and nothing big is allocated for a hostile input:
byte count, then the format sniffed from the bytes (never the file name), then the pixel count the header
claims, and only then decoding. Pillow's global ``MAX_IMAGE_PIXELS`` and ``LOAD_TRUNCATED_IMAGES`` are left
alone: the pixel limit is applied per call, and truncated files stay errors.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from carspot.ingest.errors import (
    CorruptImage,
    DecompressionBomb,
    EmptyImage,
    EncodedTooLarge,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    TruncatedImage,
    UnsupportedImage,
)

logger = logging.getLogger("carspot.ingest.images")

#: The only Pillow plugins allowed to parse untrusted bytes (a small attack surface; EPS would even run
#: Ghostscript). The JPEG plugin also opens the multi-picture JPEGs phones write (format "MPO"); AVIF only
#: when this Pillow build has it.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")

_ALLOWED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "Windows icon"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL codestream"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})
_MIN_HEADER_BYTES = 64
_RESIZABLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})


@dataclass(frozen=True, slots=True)
class NormalizedImage:
    """The picture as every later stage sees it; ``sha256`` is of ``jpeg`` and is the de-duplication key."""

    jpeg: bytes = field(repr=False)
    width: int
    height: int
    sha256: str
    original_format: str
    original_width: int
    original_height: int


def normalize_image(
    data: bytes,
    *,
    max_side: int = 1024,
    max_pixels: int = 50_000_000,
    max_bytes: int = 20 * 2**20,
    max_encoded_bytes: int = 8 * 2**20,
    jpeg_quality: int = 90,
) -> NormalizedImage:
    """Decode ``data`` safely and re-encode it as an upright RGB baseline JPEG, longer side <= ``max_side``.

    Deterministic (the same bytes give the same JPEG, so ``sha256`` de-duplicates re-posts of one file).
    Raises an ``ImageError`` subclass for any input that is not a usable picture. ``max_pixels`` applies
    per call; Pillow's own process-wide limit (``Image.MAX_IMAGE_PIXELS``, ~89 M) still caps it, and its
    warning counts as a refusal too, so raising ``max_pixels`` above that has no effect.
    """
    if max_side < 1 or max_pixels < 1 or max_bytes < 1 or max_encoded_bytes < 1:
        raise ValueError("limits must be positive")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError("jpeg_quality must be within 1..100")
    if not data:
        raise EmptyImage("zero bytes")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{len(data)} bytes, limit {max_bytes}", size=len(data), limit=max_bytes)

    with _pillow_errors():
        im = _open(data)  # in-memory, so no file handle to close
        fmt = im.format or "unknown"
        original_size = im.size
        _check_pixels(original_size, max_pixels)
        target = _fit(original_size, max_side)
        if fmt in ("JPEG", "MPO") and target != original_size:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (memory and time), keeping >= 2x the target so the
            # LANCZOS pass below still has detail to work with (as Image.thumbnail does).
            im.draft(None, (target[0] * 2, target[1] * 2))
        im.load()  # the first frame only: after open, frame 0 is current for GIF/APNG/WebP/MPO/TIFF
        icc = im.info.get("icc_profile")
        before = im.size
        _apply_exif_orientation(im)
        if im.size != before:  # turned by 90 degrees: the target turns too
            target = (target[1], target[0])

    frame: Image.Image = im
    with _conversion_errors():
        frame = _to_8bit(frame)
        frame = _to_resizable(frame)
        if frame.size != target:
            frame = frame.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        frame = _flatten_alpha(frame)
        frame = _to_srgb(frame, icc if isinstance(icc, bytes) else None)

    jpeg = _encode_jpeg(frame, quality=jpeg_quality)
    if len(jpeg) > max_encoded_bytes:
        raise EncodedTooLarge(f"normalised JPEG is {len(jpeg)} bytes, limit {max_encoded_bytes}")
    return NormalizedImage(
        jpeg=jpeg,
        width=frame.width,
        height=frame.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        original_format=fmt,
        original_width=original_size[0],
        original_height=original_size[1],
    )


def decode_jpeg_rgb(jpeg: bytes, *, max_pixels: int = 50_000_000) -> npt.NDArray[np.uint8]:
    """Decode a normalised JPEG (as produced by :func:`normalize_image`) into an HxWx3 ``uint8`` array.

    The worker reads these from Kafka; they are ours, but a message is still input, so the same guards apply.
    """
    if not jpeg:
        raise EmptyImage("zero bytes")
    with _pillow_errors():
        try:
            im = Image.open(io.BytesIO(jpeg), formats=["JPEG"])
        except UnidentifiedImageError as exc:
            raise NotAnImage(f"not a JPEG: {_describe(jpeg)}") from exc
        _check_pixels(im.size, max_pixels)
        im.load()
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return np.array(rgb, dtype=np.uint8)  # a writable copy, independent of Pillow's buffer


def sniff_image_format(head: bytes) -> str | None:
    """The picture format the first bytes announce ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"), else None.

    For fetchers: decide from the first few bytes of a download, never from its Content-Type, whether it
    is worth reading on. A format named here may still be refused later by :func:`normalize_image`.
    """
    known = next((name for signature, name in _ALLOWED_SIGNATURES if head.startswith(signature)), None)
    if known is not None:
        return known
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    return None


def refusal_for(data: bytes) -> ImageError:
    """The error to raise for bytes that are not an allowed picture, saying what they are instead."""
    return _unidentified(data)


# --- opening and guarding -------------------------------------------------------------------------------


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_open_formats())
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc


@lru_cache(maxsize=1)
def _open_formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can open (registering plugins on first use, not at import)."""
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"header claims a {width}x{height} picture")
    if width * height > max_pixels:
        pixels = width * height
        raise DecompressionBomb(f"header claims {width}x{height} = {pixels} pixels, limit {max_pixels}")


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    longer = max(width, height)
    if longer <= max_side:
        return size
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))


@contextmanager
def _pillow_errors() -> Iterator[None]:
    """Map what Pillow raises while parsing and decoding to our reasons (one place, not scattered).

    Pillow's DecompressionBombWarning becomes an error; its other warnings (e.g. "Corrupt EXIF data") say
    nothing we act on and go to the debug log instead of stderr. ``catch_warnings`` is process-global state,
    fine for the single-threaded producer loop (our own pixel check is the real guard anyway).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DecompressionBomb(str(exc)) from exc
        except EOFError as exc:
            raise TruncatedImage(f"unexpected end of data: {exc}") from exc
        except OSError as exc:
            message = str(exc)
            if "truncated" in message.lower():
                raise TruncatedImage(message) from exc
            if "not available" in message or "unsupported" in message.lower():
                raise UnsupportedImage(message) from exc
            raise CorruptImage(message) from exc
        except (SyntaxError, ValueError, struct.error, zlib.error, IndexError) as exc:
            raise CorruptImage(f"{type(exc).__name__}: {exc}") from exc
        finally:
            for warning in caught:
                logger.debug("Pillow: %s", warning.message)


@contextmanager
def _conversion_errors() -> Iterator[None]:
    """A decoded picture Pillow cannot convert (exotic mode) is unsupported, not a bug of ours."""
    try:
        yield
    except ValueError as exc:
        raise UnsupportedImage(f"cannot convert to RGB: {exc}") from exc


def _unidentified(data: bytes) -> ImageError:
    """Say what the bytes are instead, so a DLQ reader sees "an HTML page", not just "not an image"."""
    head = data[:64]
    known = next((name for signature, name in _ALLOWED_SIGNATURES if head.startswith(signature)), None)
    if known is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        known = "WebP"
    if known is not None:
        if len(data) < _MIN_HEADER_BYTES:  # no picture of these formats has a complete header this short
            return TruncatedImage(f"{known} signature, but only {len(data)} bytes")
        return CorruptImage(f"{known} signature, but the header does not parse")
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return UnsupportedImage(f"{name} is not a supported image format")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return UnsupportedImage(f"HEIF/AVIF ({brand.decode('ascii', 'replace')}) is not supported here")
        return NotAnImage(f"ISO media file (brand {brand!r}), probably a video")
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text:
        return UnsupportedImage("SVG (vector) images are not supported")
    return NotAnImage(_describe(data))


def _describe(data: bytes) -> str:
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page (an error or login page instead of the picture?)"
    if text.startswith(b"%pdf"):
        return "a PDF document"
    if text.startswith((b"{", b"[")):
        return "JSON or other text"
    if text.startswith(b"<"):
        return "XML or other markup"
    try:
        sample = data[:1024].decode("utf-8")
    except UnicodeDecodeError:
        sample = None
    if sample is not None and all(ch.isprintable() or ch in "\t\r\n" for ch in sample):
        return "plain text"
    return f"unknown binary data starting with {data[:8].hex()}"


# --- conversions ----------------------------------------------------------------------------------------


def _apply_exif_orientation(im: Image.Image) -> None:
    """Rotate/flip in place as the camera's EXIF orientation says; a broken EXIF block is ignored.

    A malformed EXIF block is common in the wild (editors, messengers) and says nothing about the pixels,
    so it costs the orientation, not the picture.
    """
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        logger.debug("ignoring unreadable EXIF block: %s", exc)
        return
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        ImageOps.exif_transpose(im, in_place=True)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit and float single-channel pictures to 8 bits over their real range (never clip).

    ``I;16*`` holds 0..65535 and is divided by 257; ``I`` is treated the same when it fits 16 bits (that is
    what 16-bit PNG and TIFF decode to), else stretched min..max, as is ``F`` unless it is already 0..1.
    """
    mode = im.mode
    if not (mode.startswith("I") or mode == "F"):
        return im
    values = np.asarray(im)
    if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 0xFFFF):
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535
    else:
        as_float = values.astype(np.float64)
        low, high = float(np.nanmin(as_float)), float(np.nanmax(as_float))
        if mode == "F" and low >= 0.0 and high <= 1.0:
            low, high = 0.0, 1.0
        span = high - low
        scaled = np.zeros_like(as_float) if span <= 0 else np.rint((as_float - low) * (255.0 / span))
        scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _to_resizable(im: Image.Image) -> Image.Image:
    """Expand palettes and odd modes into ones LANCZOS can resize, keeping transparency as alpha."""
    mode = im.mode
    has_key = "transparency" in im.info
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or has_key else "RGB")
    if mode in ("L", "RGB") and has_key:  # a colour key (PNG tRNS) is transparency too
        return im.convert("RGBA")
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode in _RESIZABLE_MODES:
        return im
    return im.convert("RGB")


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Composite onto white: transparent logos on a black background would hide the car brands."""
    if im.mode not in ("LA", "RGBA"):
        return im
    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
    background.alpha_composite(im.convert("RGBA"))
    return background.convert("RGB")


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded ICC profile (CMYK print files, Display-P3 phone photos); fall back to Pillow's
    plain conversion when the profile is broken or does not match the mode."""
    if icc and im.mode in ("RGB", "CMYK", "L"):
        transform = _srgb_transform(icc, im.mode)
        if transform is not None:
            try:
                converted = ImageCms.applyTransform(im, transform)
            except (ImageCms.PyCMSError, ValueError) as exc:
                logger.debug("ICC transform failed, using plain conversion: %s", exc)
            else:
                if converted is not None:
                    return converted
    return im if im.mode == "RGB" else im.convert("RGB")


@lru_cache(maxsize=32)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Build (once per distinct profile) the transform to sRGB; ``None`` when the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.buildTransform(source, _srgb_profile(), mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        logger.debug("unusable ICC profile (%d bytes): %s", len(icc), exc)
        return None


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _encode_jpeg(im: Image.Image, *, quality: int) -> bytes:
    """Baseline, non-optimised, 4:2:0, no metadata: fixed settings make the bytes (and sha256) repeatable."""
    im.info = {}  # Pillow would otherwise carry a JPEG comment over; no EXIF/ICC/XMP leaves ingest either
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling="4:2:0")
    return buffer.getvalue()


__all__ = ["ALLOWED_FORMATS", "NormalizedImage", "decode_jpeg_rgb", "normalize_image"]
