"""normalize_image: every picture comes out as an upright, white-backed, 8-bit RGB baseline JPEG of bounded
size, always the same bytes for the same input; every bad input is refused with its reason code."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

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
from carspot.ingest.images import NormalizedImage, decode_jpeg_rgb, normalize_image
from tests.ingest.factories import (
    BLUE,
    GREEN,
    RED,
    animated_gif,
    encode,
    halves,
    jpeg_with_orientation,
    noise,
    png_claiming,
)


def pixel(image: NormalizedImage, x: int, y: int) -> tuple[int, int, int]:
    r, g, b = decode_jpeg_rgb(image.jpeg)[y, x]
    return int(r), int(g), int(b)


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def jpeg_segments(jpeg: bytes) -> list[int]:
    """The marker of every segment before the scan (APPn, DQT, SOFn, ...)."""
    markers, i = [], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return markers


# --- good pictures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bus.jpg", "dog.jpg", "kite.jpg", "street-000004.jpg", "times-square.png"])
def test_real_scenes_become_bounded_baseline_jpegs_without_metadata(scenes_dir: Path, name: str) -> None:
    data = (scenes_dir / name).read_bytes()
    with Image.open(scenes_dir / name) as original:
        original_size = original.size

    image = normalize_image(data)

    assert (image.original_width, image.original_height) == original_size
    assert image.original_format == ("PNG" if name.endswith(".png") else "JPEG")
    assert max(image.width, image.height) == min(1024, max(original_size))
    ratio_in, ratio_out = original_size[0] / original_size[1], image.width / image.height
    assert ratio_out == pytest.approx(ratio_in, rel=0.01)
    array = decode_jpeg_rgb(image.jpeg)
    assert array.shape == (image.height, image.width, 3) and array.dtype == np.uint8
    assert image.sha256 == hashlib.sha256(image.jpeg).hexdigest()
    markers = jpeg_segments(image.jpeg)
    assert 0xC0 in markers, "baseline DCT"
    assert 0xC2 not in markers, "not progressive"
    assert not {0xE1, 0xE2, 0xFE} & set(markers), "no EXIF/XMP, ICC or comment leaves ingest"


def test_the_same_input_gives_the_same_bytes(scenes_dir: Path) -> None:
    for name in ("bus.jpg", "times-square.png"):
        data = (scenes_dir / name).read_bytes()
        first, second = normalize_image(data), normalize_image(bytes(data))
        assert first == second and first.jpeg == second.jpeg


def test_a_normalised_jpeg_is_a_fixed_point_in_size() -> None:
    once = normalize_image(encode(noise((300, 200)), "PNG"))
    again = normalize_image(once.jpeg)
    assert (again.width, again.height) == (once.width, once.height) == (300, 200)


@pytest.mark.parametrize(
    ("orientation", "size", "top_left", "bottom_right"),
    [
        (1, (400, 200), RED, BLUE),
        (3, (400, 200), BLUE, RED),  # upside down
        (6, (200, 400), RED, BLUE),  # turned 90 degrees clockwise: the left half becomes the top
        (8, (200, 400), BLUE, RED),  # turned 90 degrees counter-clockwise
    ],
)
def test_exif_orientation_is_applied(
    orientation: int,
    size: tuple[int, int],
    top_left: tuple[int, int, int],
    bottom_right: tuple[int, int, int],
) -> None:
    image = normalize_image(jpeg_with_orientation(orientation))

    assert (image.width, image.height) == size
    assert (image.original_width, image.original_height) == (400, 200), "as stored"
    assert close_to(pixel(image, 5, 5), top_left)
    assert close_to(pixel(image, image.width - 5, image.height - 5), bottom_right)


def test_exif_orientation_is_applied_before_downscaling() -> None:
    image = normalize_image(jpeg_with_orientation(6, size=(2000, 1000)), max_side=500)
    assert (image.width, image.height) == (250, 500)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = halves((100, 50), RED, BLUE).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"

    image = normalize_image(data)

    assert close_to(pixel(image, 10, 25), RED) and close_to(pixel(image, 90, 25), BLUE)


def test_transparent_png_is_composited_onto_white() -> None:
    rgba = Image.new("RGBA", (100, 50), (0, 0, 0, 0))  # transparent *black*: must not come out black
    rgba.paste((*RED, 255), (0, 0, 50, 50))
    rgba.paste((0, 0, 255, 128), (75, 0, 100, 50))  # half-transparent blue over white

    image = normalize_image(encode(rgba, "PNG"))

    assert close_to(pixel(image, 10, 25), RED)
    assert close_to(pixel(image, 60, 25), (255, 255, 255))
    assert close_to(pixel(image, 90, 25), (127, 127, 255), tolerance=6)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(fmt: str) -> None:
    palette = Image.new("P", (100, 50), 0)
    palette.putpalette([0, 0, 0, *RED] + [0] * (256 * 3 - 6))
    palette.paste(1, (0, 0, 50, 50))

    image = normalize_image(encode(palette, fmt, transparency=0))

    assert close_to(pixel(image, 10, 25), RED) and close_to(pixel(image, 90, 25), (255, 255, 255))


def test_grey_with_alpha_becomes_white_where_transparent() -> None:
    la = Image.new("LA", (40, 20), (0, 0))
    la.paste((30, 255), (0, 0, 20, 20))

    image = normalize_image(encode(la, "PNG"))

    assert close_to(pixel(image, 5, 10), (30, 30, 30)) and close_to(pixel(image, 35, 10), (255, 255, 255))


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    gradient = np.tile(np.linspace(0, 65535, 256), (32, 1)).astype(np.uint16)
    data = encode(Image.fromarray(gradient), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I;16"

    row = decode_jpeg_rgb(normalize_image(data).jpeg)[16, :, 0].astype(int)

    assert row[0] <= 3 and row[-1] >= 252, "the full range survives"
    assert abs(row[128] - 128) <= 4, "mid-grey stays mid-grey (clipping would give 255)"
    assert np.all(np.diff(row[::16]) > 0), "the gradient still rises"


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_tiff_is_stretched_over_its_range(mode: str) -> None:
    values = np.tile(np.linspace(0, 65535, 256) if mode == "I" else np.linspace(-5, 5, 256), (8, 1))
    data = encode(Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32), mode), "TIFF")

    row = decode_jpeg_rgb(normalize_image(data).jpeg)[4, :, 0].astype(int)

    assert row[0] <= 3 and row[-1] >= 252 and abs(row[128] - 128) <= 4


def test_animated_gif_keeps_its_first_frame() -> None:
    image = normalize_image(animated_gif([RED, GREEN, BLUE]))
    assert image.original_format == "GIF"
    assert close_to(pixel(image, 10, 10), RED, tolerance=20)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_common_formats_are_accepted(fmt: str) -> None:
    image = normalize_image(encode(halves((64, 32), RED, BLUE), fmt))
    assert image.original_format == fmt and (image.width, image.height) == (64, 32)


def test_large_pictures_are_downscaled_to_max_side() -> None:
    big_png = encode(halves((3000, 1500), RED, BLUE), "PNG")
    big_jpeg = encode(noise((4000, 3000)), "JPEG", quality=80)  # decoded at a reduced scale (draft)

    assert (lambda i: (i.width, i.height))(normalize_image(big_png)) == (1024, 512)
    assert (lambda i: (i.width, i.height))(normalize_image(big_jpeg)) == (1024, 768)
    small = normalize_image(big_png, max_side=300)
    assert (small.width, small.height) == (300, 150)
    assert close_to(pixel(small, 10, 75), RED) and close_to(pixel(small, 290, 75), BLUE)


def test_small_pictures_are_not_upscaled() -> None:
    image = normalize_image(encode(halves((33, 17), RED, BLUE), "PNG"))
    assert (image.width, image.height) == (33, 17)


def test_an_embedded_icc_profile_is_applied_and_a_broken_one_ignored() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture = halves((64, 32), RED, BLUE)

    with_profile = normalize_image(encode(picture, "JPEG", quality=95, icc_profile=srgb))
    broken = normalize_image(encode(picture, "JPEG", quality=95, icc_profile=b"not a profile" * 10))

    assert close_to(pixel(with_profile, 5, 16), RED) and close_to(pixel(with_profile, 60, 16), BLUE)
    assert close_to(pixel(broken, 5, 16), RED)


def test_a_corrupt_exif_block_costs_the_orientation_not_the_picture() -> None:
    plain = encode(halves((64, 32), RED, BLUE), "JPEG")
    garbage = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 20
    data = plain[:2] + b"\xff\xe1" + (len(garbage) + 2).to_bytes(2, "big") + garbage + plain[2:]

    image = normalize_image(data)

    assert (image.width, image.height) == (64, 32)


def test_pillow_globals_are_left_alone(scenes_dir: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    normalize_image((scenes_dir / "dog.jpg").read_bytes(), max_pixels=10_000_000)
    with pytest.raises(DecompressionBomb):
        normalize_image(png_claiming(2000, 2000), max_pixels=1_000_000)
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert after == before


# --- bad inputs -----------------------------------------------------------------------------------------


def test_zero_bytes_is_empty() -> None:
    with pytest.raises(EmptyImage) as refused:
        normalize_image(b"")
    assert refused.value.reason == "empty"


def test_a_jpeg_cut_in_half_is_truncated_not_partly_decoded(scenes_dir: Path) -> None:
    dog = (scenes_dir / "dog.jpg").read_bytes()
    for cut in (dog[: len(dog) // 2], dog[:200]):
        with pytest.raises(TruncatedImage) as refused:
            normalize_image(cut)
        assert refused.value.reason == "truncated"


def test_a_png_cut_short_is_truncated(scenes_dir: Path) -> None:
    png = (scenes_dir / "times-square.png").read_bytes()
    for cut in (png[:3000], png[: len(png) // 2], png[:30]):
        with pytest.raises(TruncatedImage):
            normalize_image(cut)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"these are my notes, not a picture\n" * 20, "text"),
        (b"<!DOCTYPE html><html><body><img src=x></body></html>", "HTML"),
        (b'{"error": "rate limited"}', "JSON"),
        (b"%PDF-1.7\n" + b"\0" * 100, "PDF"),
        (bytes(range(256)) * 16, "binary"),
    ],
)
def test_text_html_and_unknown_bytes_are_not_images(data: bytes, says: str) -> None:
    with pytest.raises(NotAnImage) as refused:
        normalize_image(data)
    assert refused.value.reason == "not_an_image"
    assert says.lower() in str(refused.value).lower()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 100,  # an iPhone HEIC
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"8BPS\x00\x01" + b"\0" * 100,  # Photoshop
    ],
)
def test_pictures_in_formats_we_do_not_decode_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage) as refused:
        normalize_image(data)
    assert refused.value.reason == "unsupported"


def test_a_known_signature_with_a_garbage_header_is_corrupt() -> None:
    with pytest.raises(CorruptImage) as refused:
        normalize_image(b"\x89PNG\r\n\x1a\n" + b"\x07" * 200)
    assert refused.value.reason == "corrupt"


def test_a_png_claiming_30000_squared_pixels_is_refused_before_decoding() -> None:
    bomb = png_claiming(30_000, 30_000)  # 900 M pixels, 2.7 GB once decoded; the file is ~100 bytes
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBomb) as refused:
            normalize_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.reason == "decompression_bomb"
    assert peak < 5 * 2**20, peak  # never decoded


def test_the_pixel_limit_is_per_call_and_below_pillows_own() -> None:
    claims_60m = png_claiming(10_000, 6_000)  # under Pillow's global limit, over our default
    with pytest.raises(DecompressionBomb, match="60000000 pixels"):
        normalize_image(claims_60m)
    with pytest.raises(DecompressionBomb):
        normalize_image(png_claiming(200, 200), max_pixels=39_999)
    # Raising our limit above Pillow's global one does not bypass it: its warning counts as a refusal too.
    with pytest.raises(DecompressionBomb):
        normalize_image(png_claiming(10_000, 9_000), max_pixels=10**9)


def test_bytes_over_the_limit_are_refused_before_parsing() -> None:
    data = b"\xff\xd8\xff" + b"\0" * 5000
    with pytest.raises(ImageTooLarge) as refused:
        normalize_image(data, max_bytes=4096)
    assert refused.value.reason == "too_large" and refused.value.size == len(data)


def test_a_jpeg_still_too_big_after_normalising_is_refused() -> None:
    with pytest.raises(EncodedTooLarge) as refused:
        normalize_image(encode(noise((512, 512)), "PNG"), max_encoded_bytes=20_000)
    assert refused.value.reason == "encoded_too_large"


def test_every_refusal_is_an_image_error_with_a_stable_reason() -> None:
    reasons = set()
    for data in (b"", b"hello", png_claiming(30_000, 30_000), b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(ImageError) as refused:
            normalize_image(data)
        reasons.add(refused.value.reason)
    assert reasons == {"empty", "not_an_image", "decompression_bomb", "truncated"}


def test_decode_jpeg_rgb_refuses_what_is_not_a_jpeg() -> None:
    with pytest.raises(NotAnImage):
        decode_jpeg_rgb(encode(halves((8, 8), RED, BLUE), "PNG"))
    with pytest.raises(EmptyImage):
        decode_jpeg_rgb(b"")
    array = decode_jpeg_rgb(normalize_image(encode(halves((8, 4), RED, BLUE), "PNG")).jpeg)
    assert array.shape == (4, 8, 3) and array.flags.writeable
