"""The brand model on LiteRT (the TFLite runtime, XNNPACK on CPU): the CPU runtime, no TensorFlow needed.

Why LiteRT: measured on this project's 2-core CPU against ONNX Runtime (see bench/classifier.py and the README),
and it reads the file TensorFlow exports without a converter.

The model's pooled features and pre-pool feature map are added as extra outputs when the file allows
(`carspot.classifier.car_head.with_feature_outputs`), so region search needs no second model. One interpreter per
(batch size, input side), created on first use: re-allocating tensors for every call costs more than the run.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from carspot.classifier.augment import INPUT_SIZE
from carspot.classifier.runtime import RunOutputs

__all__ = ["EXACT_BATCHES", "LiteRTRuntime", "bucket"]

log = logging.getLogger("carspot.classifier.litert_runtime")

EXACT_BATCHES = 8
"""Up to this many crops run at their exact count (region search verifies 7: padding them to 8 wasted a pass)."""


def bucket(n: int, max_batch: int) -> int:
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


class LiteRTRuntime:
    """Runs a ``.tflite`` brand model; not thread-safe (the caller holds a lock)."""

    name = "litert"
    device = "cpu"

    def __init__(self, model: bytes, *, threads: int | None = 2, max_batch: int = 32) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter_cls = Interpreter
        self._threads = threads
        self.max_batch = max_batch
        self._pooled_output: int | None = None
        self._map_output: int | None = None
        self.features_unavailable = ""
        try:
            from carspot.classifier.car_head import with_feature_outputs

            self._model, positions = with_feature_outputs(model)
            self._pooled_output, self._map_output = positions.pooled, positions.feature_map
        except Exception as exc:  # region search is optional: the brand model still serves without it
            self._model = model
            self.features_unavailable = str(exc)
        self._interpreters: dict[tuple[int, int], Any] = {}  # (batch, input side) -> interpreter
        probe = self._interpreter(1, INPUT_SIZE)
        self.classes = int(probe.get_output_details()[0]["shape"][-1])

    @property
    def has_pooled(self) -> bool:
        return self._pooled_output is not None

    @property
    def has_feature_map(self) -> bool:
        return self._map_output is not None

    def _interpreter(self, batch: int, size: int) -> Any:
        interp = self._interpreters.get((batch, size))
        if interp is None:
            interp = self._interpreter_cls(model_content=self._model, num_threads=self._threads)
            index = interp.get_input_details()[0]["index"]
            interp.resize_tensor_input(index, [batch, size, size, 3], strict=False)
            interp.allocate_tensors()
            self._interpreters[(batch, size)] = interp
        return interp

    def run(self, pixels: np.ndarray, *, pooled: bool = False, feature_map: bool = False) -> RunOutputs:
        n, size = len(pixels), int(pixels.shape[1])
        padded = bucket(n, self.max_batch)
        if padded > n:  # pad to the bucket: one interpreter per power of two, not one per count
            pixels = np.concatenate([pixels, np.zeros((padded - n, *pixels.shape[1:]), np.float32)])
        interp = self._interpreter(len(pixels), size)
        interp.set_tensor(interp.get_input_details()[0]["index"], pixels)
        interp.invoke()
        outputs = interp.get_output_details()
        probs = np.asarray(interp.get_tensor(outputs[0]["index"])[:n], dtype=np.float32)
        feats = _dequantized(interp, outputs[self._pooled_output])[:n] if pooled and self.has_pooled else None
        fmap = _dequantized(interp, outputs[self._map_output])[:n] if feature_map and self.has_feature_map else None
        return RunOutputs(probabilities=probs, pooled=feats, feature_map=fmap)
