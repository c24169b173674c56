"""Composes the detector (and, later, the brand classifier) into the one analysis function the worker runs.

Models are loaded once by the caller and passed in as callables; this module only turns their validated
outputs into the store's records, so no framework type crosses a stage boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from carspot.detector.detections import Detections
from carspot.pipeline.message import Post
from carspot.store.records import AnalysisRecord, RegionRecord

CarDetector = Callable[[np.ndarray], Detections]
DETECTOR_ONLY_VERSION = "detector-only"


class UnsupportedMode(ValueError):
    """The post asks for an analysis mode this worker has no models for."""

    reason = "unsupported_mode"


def regions_from(detections: Detections) -> tuple[RegionRecord, ...]:
    """The detector's boxes as stored regions, most confident first."""
    order = np.argsort(-detections.confidence, kind="stable")
    return tuple(
        RegionRecord(
            index=rank,
            x1=float(detections.xyxy[i, 0]),
            y1=float(detections.xyxy[i, 1]),
            x2=float(detections.xyxy[i, 2]),
            y2=float(detections.xyxy[i, 3]),
            score=float(detections.confidence[i]),
            label=detections.labels[i],
        )
        for rank, i in enumerate(order)
    )


@dataclass(frozen=True)
class ModeRunner:
    """One analysis mode: what it runs and the names stored with its results."""

    run: Callable[[np.ndarray], AnalysisParts]
    detector: str
    model_version: str


@dataclass(frozen=True)
class AnalysisParts:
    regions: tuple[RegionRecord, ...]


def detector_mode(*, detect: CarDetector, detector_name: str) -> ModeRunner:
    """The detector's car regions; brands join when the classifier lands."""
    return ModeRunner(
        run=lambda image: AnalysisParts(regions=regions_from(detect(image))),
        detector=detector_name,
        model_version=DETECTOR_ONLY_VERSION,
    )


class Analysis:
    """``analysis(post, image) -> AnalysisRecord`` with the post's mode, or the default one."""

    def __init__(self, *, modes: Mapping[str, ModeRunner], default_mode: str) -> None:
        if default_mode not in modes:
            raise UnsupportedMode(f"default mode {default_mode!r} has no models (available: {sorted(modes)})")
        self._modes = dict(modes)
        self._default_mode = default_mode

    @property
    def default_mode(self) -> str:
        return self._default_mode

    def __call__(self, post: Post, image: np.ndarray) -> AnalysisRecord:
        mode = post.mode or self._default_mode
        runner = self._modes.get(mode)
        if runner is None:
            raise UnsupportedMode(f"mode {mode!r} is not available (available: {sorted(self._modes)})")
        started = time.perf_counter()
        parts = runner.run(image)
        return AnalysisRecord(
            image_sha256=post.image_sha256,
            width=post.width,
            height=post.height,
            mode=mode,
            detector=runner.detector,
            model_version=runner.model_version,
            regions=parts.regions,
            brands=(),
            analyzed_at=datetime.now(UTC),
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )
