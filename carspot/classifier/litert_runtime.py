"""The brand model on LiteRT (the TFLite runtime, XNNPACK on CPU), no TensorFlow needed.

Every version ships its ``.tflite`` file; the CPU default is ONNX Runtime when the version also ships its int8
ONNX file (`carspot.classifier.onnx_runtime`: ~1.7x faster per crop on this project's AVX2 CPU, measured).
LiteRT serves older versions and ``CARSPOT_CLASSIFIER_RUNTIME=litert``.

The model's pooled features and pre-pool feature map are added as extra outputs when the file allows
(`carspot.classifier.car_head.with_feature_outputs`), so region search needs no second model. One interpreter per
(batch size, input side), created on first use: re-allocating tensors for every call costs more than the run.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

from carspot.classifier.augment import INPUT_SIZE
from carspot.classifier.runtime import RunOutputs

__all__ = ["EXACT_BATCHES", "LiteRTRuntime", "batch_sizes"]

log = logging.getLogger("carspot.classifier.litert_runtime")

EXACT_BATCHES = 8
"""Up to this many crops run at their exact count (region search verifies 7: padding them to 8 wasted a pass)."""


def batch_sizes(n: int, max_batch: int) -> list[int]:
    """How ``n`` crops are split into interpreter runs: the largest power of two (8 or more, at most
    ``max_batch``) while more than `EXACT_BATCHES` remain, then the rest at its exact count. Nothing is padded.

    Every interpreter keeps its own tensor arena; one per distinct crop count grew a worker to 1.2 GB RSS, so only
    counts up to `EXACT_BATCHES` and the powers of two above get one. Splitting instead of padding keeps the cost
    in proportion to the crops (measured: 9 crops padded to 16 took region search from 8.7 to 5.7 images/s); the
    network's rate per crop hardly depends on the batch on CPU (~72 at 1, ~76 at 16 per core)."""
    if n < 0 or max_batch < 1:
        raise ValueError("n must be >= 0 and max_batch >= 1")
    sizes = []
    while n > 0:
        if n <= min(EXACT_BATCHES, max_batch):
            size = n
        else:
            size = min(EXACT_BATCHES, max_batch)
            while size * 2 <= min(n, max_batch):
                size *= 2
        sizes.append(size)
        n -= size
    return sizes


def _dequantized(interp: Any, detail: dict[str, Any]) -> np.ndarray:
    """An output as float32: an int8 model's internal tensors (the pooled features) carry a scale and zero point."""
    values = interp.get_tensor(detail["index"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if values.dtype == np.float32 or not scale:
        return np.asarray(values, dtype=np.float32)
    return ((values.astype(np.float32) - float(zero_point)) * float(scale)).astype(np.float32)


def _joined(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """The parts of one output in order, or None when it was not asked for."""
    present = [part for part in parts if part is not None]
    return np.concatenate(present) if present else None


class LiteRTRuntime:
    """Runs a ``.tflite`` brand model; not thread-safe (the caller holds a lock)."""

    name = "litert"
    device = "cpu"
    separable = False

    def __init__(self, model: bytes, *, threads: int | None = 2, max_batch: int = 32) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter_cls = Interpreter
        self._threads = threads
        self.max_batch = max_batch
        self._pooled_output: int | None = None
        self._map_output: int | None = None
        self._probs_output = 0
        self.features_unavailable = ""
        try:
            from carspot.classifier.car_head import with_feature_outputs

            self._model, positions = with_feature_outputs(model)
            self._pooled_output, self._map_output = positions.pooled, positions.feature_map
            self._probs_output = positions.probabilities
        except Exception as exc:  # region search is optional: the brand model still serves without it
            self._model = model
            self.features_unavailable = str(exc)
        self._interpreters: dict[tuple[int, int], Any] = {}  # (batch, input side) -> interpreter
        probe = self._interpreter(1, INPUT_SIZE)
        self.classes = int(probe.get_output_details()[self._probs_output]["shape"][-1])

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

    def run(
        self, pixels: np.ndarray, *, probabilities: bool = True, pooled: bool = False, feature_map: bool = False
    ) -> RunOutputs:
        del probabilities  # one pass gives them anyway (not `separable`)
        bounds = itertools.accumulate(batch_sizes(len(pixels), self.max_batch), initial=0)
        parts = [
            self._invoke(pixels[a:b], pooled=pooled, feature_map=feature_map) for a, b in itertools.pairwise(bounds)
        ]
        if len(parts) == 1:
            return parts[0]
        return RunOutputs(
            probabilities=_joined([p.probabilities for p in parts]),
            pooled=_joined([p.pooled for p in parts]),
            feature_map=_joined([p.feature_map for p in parts]),
        )

    def _invoke(self, pixels: np.ndarray, *, pooled: bool, feature_map: bool) -> RunOutputs:
        interp = self._interpreter(len(pixels), int(pixels.shape[1]))
        interp.set_tensor(interp.get_input_details()[0]["index"], np.ascontiguousarray(pixels))
        interp.invoke()
        outputs = interp.get_output_details()
        probs = np.array(interp.get_tensor(outputs[self._probs_output]["index"]), dtype=np.float32)
        feats = _dequantized(interp, outputs[self._pooled_output]) if pooled and self.has_pooled else None
        fmap = _dequantized(interp, outputs[self._map_output]) if feature_map and self.has_feature_map else None
        return RunOutputs(probabilities=probs, pooled=feats, feature_map=fmap)
