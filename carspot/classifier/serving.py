"""Serving: the released classifier behind one interface, on ONNX Runtime or LiteRT (CPU) or TensorFlow (GPU).

The model takes raw RGB pixels (float, at its manifest's input size: 224x224 unless trained otherwise) and returns
temperature-calibrated softmax probabilities over the makes; resizing is done here with the same function training
used (`carspot.classifier.augment.to_input`).
The runtime (`carspot.classifier.runtime`) runs the network: on CPU, ONNX Runtime when the version ships its int8
ONNX file (the fastest, measured), else LiteRT with XNNPACK; TensorFlow when it sees a GPU and the version ships
its Keras weights (``CARSPOT_CLASSIFIER_RUNTIME``). A lock makes every method safe to call from several threads
(no runtime's state is).

Region search: `predict_regions` returns, from the same model run, each crop's brand top-k and the
probability that it shows a car (the backbone's ImageNet head, `carspot.classifier.car_head`, on the pooled
features of the version's frozen car branch, `carspot.classifier.keras_model.build_car_branch`; versions made
before it read the brand network's own features). It exists only when the runtime gives those features and the
ImageNet head can be read; ``hasattr(classifier, "predict_regions")`` tells.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from carspot.classifier.augment import INPUT_SIZE, checked_input_size, to_input
from carspot.classifier.errors import (
    InvalidCropError,
    ManifestError,
    ModelLoadError,
    ModelNotFoundError,
)
from carspot.classifier.registry import (
    CAR_BRANCH,
    CAR_HEAD,
    ONNX_MODEL,
    TENSORFLOW_WEIGHTS,
    current_version,
    read_manifest,
    read_verified,
    version_dir,
)
from carspot.classifier.runtime import Runtime, RuntimeChoice, choose_runtime

if TYPE_CHECKING:
    from carspot.classifier.litert_runtime import LiteRTRuntime
    from carspot.classifier.onnx_runtime import OnnxRuntime

__all__ = ["BrandClassifier", "load_classifier", "manifest_car_logit_scale", "manifest_input_size", "merge_top_k"]

log = logging.getLogger("carspot.classifier.serving")


class BrandClassifier:
    """``predict(crops, top_k=5)`` -> for each crop, the ``top_k`` (make, probability) pairs, best first."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        version: str,
        labels: Sequence[str],
        input_size: int = INPUT_SIZE,
        car_logit_scale: float | None = None,
    ) -> None:
        from carspot.classifier.car_head import LOGIT_SCALE

        self._runtime = runtime
        self._car_head: Any = None
        self.car_logit_scale: float = LOGIT_SCALE if car_logit_scale is None else car_logit_scale
        """The car head's scale: the version's (`carspot.classifier.car_head.fit_logit_scale`), else the design's."""
        self._regions_unavailable = runtime.features_unavailable
        if runtime.has_pooled:
            try:
                from carspot.classifier.car_head import imagenet_head

                self._car_head = imagenet_head()
            except Exception as exc:  # region search is optional: the brand model still serves without it
                self._regions_unavailable = str(exc)
        if self._regions_unavailable:
            log.warning("region search unavailable with this classifier: %s", self._regions_unavailable)
        self._lock = threading.Lock()
        self.version: str = version
        self.labels: tuple[str, ...] = tuple(labels)
        self.input_size: int = input_size
        """The side every crop is resized to: the one the version was trained at (its manifest's input size)."""
        self.runtime: str = f"{runtime.name} ({runtime.device})"
        self.load_seconds: float = 0.0
        """Set by `load_classifier`: reading, verifying and preparing the model."""
        self.model_path: Path | None = None
        """Set by `load_classifier`: the version's file the runtime serves."""
        if runtime.classes != len(self.labels):
            raise ManifestError(f"the model has {runtime.classes} outputs but the manifest {len(self.labels)} labels")

    @staticmethod
    def _check(crops: Sequence[np.ndarray]) -> None:
        for i, crop in enumerate(crops):
            if not (isinstance(crop, np.ndarray) and crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3):
                raise InvalidCropError(f"crop {i} must be an HxWx3 uint8 array")
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                raise InvalidCropError(f"crop {i} is empty")

    def _pixels(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The crops as the network's input (resized as in training), computed once however many passes read it."""
        self._check(crops)
        if not crops:
            return np.zeros((0, self.input_size, self.input_size, 3), np.float32)
        return np.stack([to_input(c, size=self.input_size) for c in crops]).astype(np.float32)

    def _run(
        self, pixels: np.ndarray, *, brands: bool = True, features: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One runtime call per chunk of ``pixels``: the probabilities and, when asked, the pooled features (a
        `separable` runtime computes only what is asked)."""
        if features and not self._runtime.has_pooled:
            raise RuntimeError(f"this classifier has no feature output: {self._regions_unavailable}")
        out = np.zeros((len(pixels), len(self.labels)), dtype=np.float32) if brands else None
        feats = np.zeros((len(pixels), 1280), dtype=np.float32) if features else None
        step = self._runtime.max_batch
        with self._lock:
            for start in range(0, len(pixels), step):
                result = self._runtime.run(pixels[start : start + step], probabilities=brands, pooled=features)
                if out is not None:
                    assert result.probabilities is not None
                    out[start : start + step] = result.probabilities
                if feats is not None:
                    assert result.pooled is not None
                    feats[start : start + step] = result.pooled
        return out, feats

    def pooled_features(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The backbone's pooled features, one 1280-d row per crop (what the car head reads); a RuntimeError when
        the runtime cannot give them."""
        features = self._run(self._pixels(crops), brands=False, features=True)[1]
        assert features is not None
        return features

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The calibrated probabilities, one row per crop (``len(crops) x len(labels)``)."""
        probabilities = self._run(self._pixels(crops))[0]
        assert probabilities is not None
        return probabilities

    def _top_k(self, probs: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        k = min(top_k, len(self.labels))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]

    @property
    def predict_regions(self) -> Callable[..., tuple[list[list[tuple[str, float]]], np.ndarray]]:
        """``predict_regions(crops, *, top_k=5, min_car=0.0)`` -> (per crop the top-k makes, per crop P(car)); a
        crop under its ``min_car`` gets no makes (and, on a `separable` runtime, no brand pass). An AttributeError
        (so ``hasattr`` is False) when the model cannot give the features."""
        if not self._runtime.has_pooled or self._car_head is None:
            raise AttributeError(f"predict_regions: unavailable ({self._regions_unavailable})")
        return self._predict_regions

    def _predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = 5, min_car: float | Sequence[float] | np.ndarray = 0.0
    ) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
        """``min_car``: per crop (or one for all) the P(car) below which its makes are not wanted: such a crop
        gets an empty top-k whatever the runtime. With a `separable` runtime the car branch runs first and the
        brand network only on the crops that reach it (a car-free crop costs the branch alone); else one pass
        gives both."""
        from carspot.classifier.car_head import car_probability

        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if len(crops) == 0:
            return [], np.zeros(0, dtype=np.float32)
        # float32, as the P(car) the modes compare with their thresholds: the same crops pass here and there
        floors = np.broadcast_to(np.asarray(min_car, dtype=np.float32), (len(crops),))
        pixels = self._pixels(crops)
        separable = self._runtime.separable
        probs, feats = self._run(pixels, brands=not separable, features=True)
        assert feats is not None
        car = car_probability(feats, self._car_head, scale=self.car_logit_scale)
        wanted = np.flatnonzero(car >= floors)
        if not separable:  # one pass gave every crop's makes
            assert probs is not None
            probs = probs[wanted]
        elif len(wanted):  # every crop wanted: no copy of the batch
            probs = self._run(pixels if len(wanted) == len(crops) else pixels[wanted])[0]
        tops: list[list[tuple[str, float]]] = [[] for _ in crops]
        if probs is not None:
            for i, top in zip(wanted, self._top_k(probs, top_k), strict=True):
                tops[i] = top
        return tops, car

    @property
    def region_car_scores(self) -> Callable[..., np.ndarray]:
        """``region_car_scores(image, boxes, *, size=448)`` -> per box P(car), from ONE backbone run over the
        whole image at ``size`` x ``size``: the feature map pooled inside each box, then the ImageNet head
        (`carspot.classifier.regions`). Coarser than a crop's own pass; region search uses it to pick which
        proposals get that pass. An AttributeError (``hasattr`` False) when the model has no such map."""
        if not self._runtime.has_feature_map or self._car_head is None:
            raise AttributeError(f"region_car_scores: unavailable ({self._regions_unavailable or 'no feature map'})")
        return self._region_car_scores

    def _region_car_scores(self, image: np.ndarray, boxes: np.ndarray, *, size: int = 448) -> np.ndarray:
        from carspot.classifier.car_head import car_probability
        from carspot.classifier.regions import box_means

        self._check([image])
        if size < 32 or size % 32:
            raise ValueError("size must be a positive multiple of 32")
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0, dtype=np.float32)
        pixels = to_input(image, size=size).astype(np.float32)[None]
        with self._lock:
            feature_map = self._runtime.run(pixels, feature_map=True).feature_map
        assert feature_map is not None
        feature_map = feature_map[0]
        height, width = image.shape[:2]
        means = box_means(feature_map, boxes, image_size=(width, height))
        return car_probability(means, self._car_head, scale=self.car_logit_scale)

    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """RGB uint8 crops of any size -> per crop, the ``top_k`` makes with calibrated scores, best first."""
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if len(crops) == 0:
            return []
        return self._top_k(self.probabilities(crops), top_k)

    def predict_one(self, image: np.ndarray, *, top_k: int = 5) -> list[tuple[str, float]]:
        """One image (e.g. a whole photo): the shape `carspot.classifier.evaluate.evaluate` expects."""
        return self.predict([image], top_k=top_k)[0]


def load_classifier(
    model_dir: Path | str,
    version: str | None = None,
    *,
    threads: int | None = 2,
    max_batch: int = 32,
    runtime: RuntimeChoice = "auto",
) -> BrandClassifier:
    """The current (or the named) version from the registry, its files' sha256 verified against the manifest.

    ``runtime``: ``auto`` serves on TensorFlow when it sees a GPU and the version ships its Keras weights,
    otherwise on ONNX Runtime when it ships its ONNX file, otherwise on LiteRT
    (`carspot.classifier.runtime.choose_runtime`)."""
    if version is None:
        version = current_version(model_dir)
        if version is None:
            raise ModelNotFoundError(f"{model_dir}: no current model version (CURRENT is missing)")
    started = time.perf_counter()
    manifest = read_manifest(model_dir, version)
    folder = version_dir(model_dir, version)
    weights, onnx_file = manifest.get(TENSORFLOW_WEIGHTS), manifest.get(ONNX_MODEL)
    try:
        chosen = choose_runtime(runtime, has_tensorflow_weights=bool(weights), has_onnx=bool(onnx_file))
    except ValueError as exc:
        raise ModelLoadError(f"{folder}: {exc}") from exc
    engine: Runtime
    if chosen == "tensorflow":
        assert weights is not None
        path = folder / weights["file"]
        read_verified(path, weights["sha256"])
        from carspot.classifier.tensorflow_runtime import TensorFlowRuntime

        try:
            engine = TensorFlowRuntime(
                weights=path,
                classes=len(manifest["labels"]),
                temperature=float(manifest["temperature"]),
                car_branch=CAR_BRANCH in manifest,
            )
        except ImportError as exc:
            raise ModelLoadError(f"the tensorflow runtime needs TensorFlow (pip install -e .[gpu]): {exc}") from exc
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"{path}: TensorFlow cannot load it: {exc}") from exc
    else:  # a CPU runtime reading one file: the ONNX file or the LiteRT file
        entry = onnx_file if chosen == "onnxruntime" else {"file": manifest["model_file"], "sha256": manifest["sha256"]}
        assert entry is not None
        path = folder / entry["file"]
        engine = _cpu_runtime(chosen, read_verified(path, entry["sha256"]), path=path, threads=threads, batch=max_batch)
    classifier = BrandClassifier(
        runtime=engine,
        version=version,
        labels=manifest["labels"],
        input_size=manifest_input_size(manifest, folder),
        car_logit_scale=manifest_car_logit_scale(manifest, folder),
    )
    classifier.load_seconds = time.perf_counter() - started
    classifier.model_path = path
    log.info("brand model %s on %s, loaded in %.2f s", version, classifier.runtime, classifier.load_seconds)
    return classifier


def manifest_input_size(manifest: dict[str, Any], folder: Path) -> int:
    """The manifest's input side (224 for versions written before training could choose it); an impossible one
    is a `ManifestError` naming the version's folder."""
    try:
        return checked_input_size(manifest.get("input", {}).get("size", INPUT_SIZE))
    except ValueError as exc:
        raise ManifestError(f"{folder}: {exc}") from exc


def manifest_car_logit_scale(manifest: dict[str, Any], folder: Path) -> float | None:
    """The version's fitted car head scale (``car_head.logit_scale``), None for versions fitted before there was
    one (they serve at the designed scale); anything but a positive finite number is a `ManifestError`."""
    if CAR_HEAD not in manifest:
        return None
    scale = manifest[CAR_HEAD].get("logit_scale") if isinstance(manifest[CAR_HEAD], dict) else None
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise ManifestError(f"{folder}: car_head.logit_scale must be a positive number, got {scale!r}")
    return float(scale)


def _cpu_runtime(name: str, model: bytes, *, path: Path, threads: int | None, batch: int) -> Runtime:
    """ONNX Runtime or LiteRT on the file's bytes; what either refuses is a `ModelLoadError` naming the file."""
    runtime: type[OnnxRuntime] | type[LiteRTRuntime]
    if name == "onnxruntime":
        from carspot.classifier.onnx_runtime import OnnxRuntime as runtime

        label = "ONNX Runtime"
    else:
        from carspot.classifier.litert_runtime import LiteRTRuntime as runtime

        label = "LiteRT"
    try:
        return runtime(model, threads=threads, max_batch=batch)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: {label} cannot load it: {exc}") from exc


def merge_top_k(per_region: Sequence[Sequence[tuple[str, float]]], *, top_k: int = 5) -> list[tuple[str, float]]:
    """An image's top-k from its regions' (the paper's rule): each make scored by its best region, then the
    ``top_k`` most confident makes, best first (ties by make name, so the result is deterministic)."""
    best: dict[str, float] = {}
    for ranking in per_region:
        for make, score in ranking:
            if score > best.get(make, -1.0):
                best[make] = score
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:top_k]
