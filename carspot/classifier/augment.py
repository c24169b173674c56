"""Image preprocessing shared by training and serving, and the social-media-like augmentation.

Serving and training must resize the same way, or the model sees a different distribution at run time: both
call `to_input` (OpenCV, area-averaged to 224x224, the whole crop squashed, no centre cut: a wide car keeps
its ends).

Augmented views imitate what people post: loose or tight crops and zoom (random crop and scale, or padding as if
the box were loose), mirror images, colour casts and filters, blur and low resolution, recompression at a low
JPEG quality, and partial occlusion (a person, a lamp post, a caption). Phone photos of parked and passing cars
add (`PHONE_PHOTO`): a part of the car only (a front, a rear three-quarter), perspective from a low or high
viewpoint, low light with sensor noise, and motion blur.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

__all__ = ["INPUT_SIZE", "PHONE_PHOTO", "RESIZE", "augment", "checked_input_size", "to_input"]

INPUT_SIZE: Final = 224

RESIZE: Final = (
    "whole image squashed; at least the side on both axes: bilinear to twice the side, then area 2:1; else bilinear"
)
"""How `to_input` resizes, as a version's manifest records it (``input.resize``)."""


def checked_input_size(size: object) -> int:
    """``size`` if it is a network input side: a positive multiple of 32, the network's total stride, so every
    feature map cell covers whole pixels. Raises ``ValueError`` otherwise (training's option, a manifest's field)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 32 or size % 32:
        raise ValueError(f"input size must be a positive multiple of 32, got {size!r}")
    return size


def to_input(image: np.ndarray, *, size: int = INPUT_SIZE) -> np.ndarray:
    """An HxWx3 uint8 RGB image as the network's size x size x 3 uint8 input (the whole image, squashed).

    OpenCV, not PIL: a 1441x731 photo takes 0.7 ms instead of 6.7 ms, which is most of standard mode's budget.
    An image at least ``size`` on both sides goes bilinear to twice the size, then is area-averaged 2:1
    (anti-aliased): OpenCV's area resize at a non-integer ratio is the slow path (a 360x480 photo: 1.07 ms
    directly, 0.45 ms this way; the 400 composite scenes 1.31 -> 0.57 ms on average; by-model validation
    accuracy unchanged). Images smaller than the input on a side are enlarged bilinearly (area "enlarging" is
    nearest-neighbour)."""
    import cv2

    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    if height < size or width < size:
        return np.asarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    if height != 2 * size or width != 2 * size:
        image = cv2.resize(image, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)


PHONE_PHOTO: Final = {"part": 0.15, "perspective": 0.3, "low_light": 0.15, "motion_blur": 0.15}
"""How often each phone-photo augmentation is applied to a view (the view's other augmentations come too)."""


def _perspective(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The view seen from a little above, below or aside: each corner moved by up to 12 % of the side."""
    import cv2

    n = out.shape[0]
    src = np.array([[0, 0], [n, 0], [n, n], [0, n]], dtype=np.float32)
    dst = (src + rng.uniform(-0.12, 0.12, (4, 2)) * n).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return np.asarray(cv2.warpPerspective(out, matrix, (n, n), borderMode=cv2.BORDER_REFLECT), dtype=np.uint8)


def _low_light(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dusk or a car park: darker (gamma 1.6-2.6), a warm or cold cast, and sensor noise."""
    x = (out.astype(np.float32) / 255.0) ** float(rng.uniform(1.6, 2.6))
    x *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    x += rng.normal(0.0, float(rng.uniform(0.01, 0.05)), x.shape).astype(np.float32)
    return np.asarray(np.clip(x * 255.0, 0, 255), dtype=np.uint8)


def _motion_blur(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A passing car or a shaking hand: a line kernel of 5-15 px at a random angle."""
    import cv2

    length = int(rng.integers(5, 16))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, rot, (length, length)), dtype=np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.asarray(cv2.filter2D(out, -1, kernel), dtype=np.uint8)


def _random_crop(im: Image.Image, rng: np.random.Generator, *, area: tuple[float, float]) -> Image.Image:
    """A crop of a random share of the image's area in ``area``, its aspect ratio jittered by up to 4:3."""
    w, h = im.size
    share = rng.uniform(*area) * w * h
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))) * (w / h)
    cw = int(min(w, max(8, round(np.sqrt(share * aspect)))))
    ch = int(min(h, max(8, round(np.sqrt(share / aspect)))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def augment(image: np.ndarray, rng: np.random.Generator, *, size: int = INPUT_SIZE) -> np.ndarray:
    """One random social-media-like view of ``image`` (HxWx3 uint8), as a size x size x 3 uint8 array."""
    im = Image.fromarray(image)
    w, h = im.size
    if rng.random() < PHONE_PHOTO["part"]:
        im = _random_crop(im, rng, area=(0.25, 0.55))  # part of the car only: a front, a rear three-quarter, a side
    elif rng.random() < 0.75:
        im = _random_crop(im, rng, area=(0.55, 1.0))  # a random crop of most of it
    else:
        # a loose box: the car smaller in the frame, surrounded by a flat background
        pad = rng.uniform(0.05, 0.3)
        pw, ph = int(w * pad), int(h * pad)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        canvas = Image.new("RGB", (w + 2 * pw, h + 2 * ph), colour)
        canvas.paste(im, (int(rng.integers(0, 2 * pw + 1)), int(rng.integers(0, 2 * ph + 1))))
        im = canvas
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.25:
        # low resolution: a small region upscaled
        side = int(rng.integers(48, 112))
        im = im.resize((side, max(8, int(side * im.size[1] / im.size[0]))), Image.Resampling.BILINEAR)
    im = im.resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.8:
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4))
        im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4))
        im = ImageEnhance.Color(im).enhance(rng.uniform(0.4, 1.6))
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.0))))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(20, 90)))
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    out = np.array(im, dtype=np.uint8)
    if rng.random() < PHONE_PHOTO["perspective"]:
        out = _perspective(out, rng)
    if rng.random() < PHONE_PHOTO["low_light"]:
        out = _low_light(out, rng)
    if rng.random() < PHONE_PHOTO["motion_blur"]:
        out = _motion_blur(out, rng)
    if rng.random() < 0.3:
        # partial occlusion: a block of flat colour or noise over up to ~20 % of the view
        oh = int(rng.integers(size // 8, size // 2))
        ow = int(rng.integers(size // 8, size // 2))
        y0 = int(rng.integers(0, size - oh + 1))
        x0 = int(rng.integers(0, size - ow + 1))
        if rng.random() < 0.5:
            out[y0 : y0 + oh, x0 : x0 + ow] = rng.integers(0, 256, 3, dtype=np.uint8)
        else:
            out[y0 : y0 + oh, x0 : x0 + ow] = rng.integers(0, 256, (oh, ow, 3), dtype=np.uint8)
    return out
