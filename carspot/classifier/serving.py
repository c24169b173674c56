"""Serving: the released classifier through LiteRT (TFLite runtime, XNNPACK on CPU), without TensorFlow.

Why LiteRT: measured on this project's 2-core CPU against ONNX Runtime (see bench/classifier.py and the README),
and it reads the file TensorFlow exports without a converter. The model takes raw RGB pixels (224x224, float)
and returns temperature-calibrated softmax probabilities over the makes; resizing is done here with the same
function training used (`carspot.classifier.augment.to_input`).

Batches: crops are resized, stacked and run in chunks of at most ``max_batch``; one interpreter per chunk size
(created on first use) avoids re-allocating tensors for every call. A lock makes ``predict`` safe to call from
several threads (the interpreter itself is not).

Region search: `predict_regions` returns, from the same backbone run, each crop's brand top-k and the
probability that it shows a car (the backbone's ImageNet head on the pooled features the brand head sees, see
`carspot.classifier.car_head`). It exists only when the model exposes those features and the ImageNet head
can be read; ``hasattr(classifier, "predict_regions")`` tells.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from carspot.classifier.augment import INPUT_SIZE, to_input
from carspot.classifier.errors import (
    InvalidCropError,
    ManifestError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
)
from carspot.classifier.registry import current_version, read_manifest, version_dir

__all__ = ["BrandClassifier", "load_classifier", "merge_top_k"]

log = logging.getLogger("carspot.classifier.serving")


EXACT_BATCHES = 8
"""Up to this many crops run at their exact count (region search verifies 7: padding them to 8 wasted a pass)."""


def _bucket(n: int, max_batch: int) -> int:
    """The interpreter batch size for ``n`` crops: ``n`` itself up to `EXACT_BATCHES`, then the next power of two,
    at most ``max_batch``.

    Every interpreter keeps its own tensor arena; one per distinct crop count grew a worker to 1.2 GB RSS, so
    only small counts (cheap arenas) get their own."""
    if n <= EXACT_BATCHES:
        return min(n, max_batch)
    size = EXACT_BATCHES
    while size < n:
        size *= 2
    return min(size, max_batch)


def _dequantized(interp: Any, detail: dict[str, Any]) -> np.ndarray:
    """An output as float32: an int8 model's internal tensors (the pooled features) carry a scale and zero point."""
    values = interp.get_tensor(detail["index"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if values.dtype == np.float32 or not scale:
        return np.asarray(values, dtype=np.float32)
    return ((values.astype(np.float32) - float(zero_point)) * float(scale)).astype(np.float32)


class BrandClassifier:
    """``predict(crops, top_k=5)`` -> for each crop, the ``top_k`` (make, probability) pairs, best first."""

    def __init__(
        self, *, model: bytes, version: str, labels: Sequence[str], threads: int | None = 2, max_batch: int = 32
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter_cls = Interpreter
        self._model = model
        self._feature_output: int | None = None
        self._car_head: Any = None
        self._regions_unavailable = ""
        self._map_output: int | None = None
        try:
            from carspot.classifier.car_head import imagenet_head, with_feature_outputs

            self._model, positions = with_feature_outputs(model)
            self._feature_output, self._map_output = positions.pooled, positions.feature_map
            self._car_head = imagenet_head()
        except Exception as exc:  # region search is optional: the brand model still serves without it
            self._model, self._feature_output = model, None
            self._regions_unavailable = str(exc)
            log.warning("region search unavailable with this classifier: %s", exc)
        self._threads = threads
        self._max_batch = max_batch
        self._interpreters: dict[tuple[int, int], Any] = {}  # (batch, input side) -> interpreter
        self._lock = threading.Lock()
        self.version: str = version
        self.labels: tuple[str, ...] = tuple(labels)
        self.load_seconds: float = 0.0
        """Set by `load_classifier`: reading, verifying and preparing the model."""
        probe = self._interpreter(1)
        n_out = int(probe.get_output_details()[0]["shape"][-1])
        if n_out != len(self.labels):
            raise ManifestError(f"the model has {n_out} outputs but the manifest {len(self.labels)} labels")

    def _interpreter(self, batch: int, size: int = INPUT_SIZE) -> Any:
        interp = self._interpreters.get((batch, size))
        if interp is None:
            interp = self._interpreter_cls(model_content=self._model, num_threads=self._threads)
            index = interp.get_input_details()[0]["index"]
            interp.resize_tensor_input(index, [batch, size, size, 3], strict=False)
            interp.allocate_tensors()
            self._interpreters[(batch, size)] = interp
        return interp

    @staticmethod
    def _check(crops: Sequence[np.ndarray]) -> None:
        for i, crop in enumerate(crops):
            if not (isinstance(crop, np.ndarray) and crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3):
                raise InvalidCropError(f"crop {i} must be an HxWx3 uint8 array")
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                raise InvalidCropError(f"crop {i} is empty")

    def _run(self, crops: Sequence[np.ndarray], *, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One backbone run per chunk: the probabilities and, when asked, the pooled features."""
        self._check(crops)
        out = np.zeros((len(crops), len(self.labels)), dtype=np.float32)
        feats = None
        if features:
            if self._feature_output is None:
                raise RuntimeError(f"this classifier has no feature output: {self._regions_unavailable}")
            feats = np.zeros((len(crops), 1280), dtype=np.float32)
        with self._lock:
            for start in range(0, len(crops), self._max_batch):
                chunk = crops[start : start + self._max_batch]
                n = len(chunk)
                batch = np.stack([to_input(c) for c in chunk]).astype(np.float32)
                size = _bucket(n, self._max_batch)
                if size > n:  # pad to the bucket: one interpreter per power of two, not one per count
                    batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), np.float32)])
                interp = self._interpreter(size)
                interp.set_tensor(interp.get_input_details()[0]["index"], batch)
                interp.invoke()
                outputs = interp.get_output_details()
                out[start : start + n] = interp.get_tensor(outputs[0]["index"])[:n]
                if feats is not None:
                    feats[start : start + n] = _dequantized(interp, outputs[self._feature_output])[:n]
        return out, feats

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The calibrated probabilities, one row per crop (``len(crops) x len(labels)``)."""
        return self._run(crops, features=False)[0]

    def _top_k(self, probs: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        k = min(top_k, len(self.labels))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]

    @property
    def predict_regions(self) -> Callable[..., tuple[list[list[tuple[str, float]]], np.ndarray]]:
        """``predict_regions(crops, *, top_k=5)`` -> (per crop the top-k makes, per crop P(car)), one backbone
        run per crop. An AttributeError (so ``hasattr`` is False) when the model cannot give the features."""
        if self._feature_output is None or self._car_head is None:
            raise AttributeError(f"predict_regions: unavailable ({self._regions_unavailable})")
        return self._predict_regions

    def _predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = 5
    ) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
        from carspot.classifier.car_head import car_probability

        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if len(crops) == 0:
            return [], np.zeros(0, dtype=np.float32)
        probs, feats = self._run(crops, features=True)
        assert feats is not None
        return self._top_k(probs, top_k), car_probability(feats, self._car_head)

    @property
    def region_car_scores(self) -> Callable[..., np.ndarray]:
        """``region_car_scores(image, boxes, *, size=448)`` -> per box P(car), from ONE backbone run over the
        whole image at ``size`` x ``size``: the feature map pooled inside each box, then the ImageNet head
        (`carspot.classifier.regions`). Coarser than a crop's own pass; region search uses it to pick which
        proposals get that pass. An AttributeError (``hasattr`` False) when the model has no such map."""
        if self._map_output is None or self._car_head is None:
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
            interp = self._interpreter(1, size)
            interp.set_tensor(interp.get_input_details()[0]["index"], pixels)
            interp.invoke()
            assert self._map_output is not None
            feature_map = _dequantized(interp, interp.get_output_details()[self._map_output])[0]
        height, width = image.shape[:2]
        return car_probability(box_means(feature_map, boxes, image_size=(width, height)), self._car_head)

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
    model_dir: Path | str, version: str | None = None, *, threads: int | None = 2, max_batch: int = 32
) -> BrandClassifier:
    """The current (or the named) version from the registry, its sha256 verified against the manifest."""
    if version is None:
        version = current_version(model_dir)
        if version is None:
            raise ModelNotFoundError(f"{model_dir}: no current model version (CURRENT is missing)")
    started = time.perf_counter()
    manifest = read_manifest(model_dir, version)
    path = version_dir(model_dir, version) / manifest["model_file"]
    try:
        model = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{path}: missing") from exc
    if hashlib.sha256(model).hexdigest() != manifest["sha256"]:
        raise ModelIntegrityError(f"{path}: sha256 differs from its manifest")
    try:
        classifier = BrandClassifier(
            model=model, version=version, labels=manifest["labels"], threads=threads, max_batch=max_batch
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: LiteRT cannot load it: {exc}") from exc
    classifier.load_seconds = time.perf_counter() - started
    return classifier


def merge_top_k(per_region: Sequence[Sequence[tuple[str, float]]], *, top_k: int = 5) -> list[tuple[str, float]]:
    """An image's top-k from its regions' (the paper's rule): each make scored by its best region, then the
    ``top_k`` most confident makes, best first (ties by make name, so the result is deterministic)."""
    best: dict[str, float] = {}
    for ranking in per_region:
        for make, score in ranking:
            if score > best.get(make, -1.0):
                best[make] = score
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:top_k]
