"""A version's car head scale: fitted on its own training photos and recorded in its manifest (``car_head``).

Serving reads it (`carspot.classifier.serving.manifest_car_logit_scale`); versions without one serve at the
designed `carspot.classifier.car_head.LOGIT_SCALE`. Training calls `fit_car_head` after its exports; it also
gives an existing version its scale without retraining, as `carspot.classifier.onnx_export.add_onnx` does for the
ONNX file. `carspot models promote` then checks the result on car-free images it never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from carspot.classifier.car_head import CAR_MEDIAN_TARGET, car_probability, fit_logit_scale, imagenet_head
from carspot.classifier.registry import CAR_HEAD, read_manifest, version_dir, write_manifest

__all__ = ["fit_car_head"]

log = logging.getLogger("carspot.classifier.car_scale")


def fit_car_head(
    model_dir: Path | str,
    version: str,
    *,
    car_photos: Sequence[np.ndarray],
    target_median: float = CAR_MEDIAN_TARGET,
) -> dict[str, Any]:
    """Fits the version's car head scale on ``car_photos`` (RGB uint8 photos of cars, as served: through the
    runtime a CPU worker loads) and records it in the manifest; returns the entry written. When no scale brings
    the photos to ``target_median`` the entry says so and a warning is logged: its car head is likely to fail
    `carspot models promote`'s car check."""
    from carspot.classifier.serving import load_classifier

    classifier = load_classifier(model_dir, version)
    features = classifier.pooled_features(car_photos)
    head = imagenet_head()
    scale = fit_logit_scale(features, head, target_median=target_median)
    median = float(np.median(car_probability(features, head, scale=scale)))
    entry = {
        "logit_scale": scale,
        "target_median": target_median,
        "median_car_probability": round(median, 4),
        "reached_target": median >= target_median,
        "photos": len(car_photos),
        "runtime": classifier.runtime,
    }
    if median < target_median:
        log.warning(
            "version %s: no car head scale brings its car photos to a median P(car) of %.2f (%.3f at %.1f); "
            "its car head will likely fail the promote check",
            version,
            target_median,
            median,
            scale,
        )
    manifest = read_manifest(model_dir, version)
    manifest[CAR_HEAD] = entry
    write_manifest(version_dir(model_dir, version), manifest)
    return entry
