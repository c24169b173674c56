"""What serving needs of a runtime that runs the brand model: one forward pass over a batch of input pixels.

Three implement it: `carspot.classifier.onnx_runtime` (CPU, the default when the version ships its int8 ONNX
file), `carspot.classifier.litert_runtime` (CPU, every version's ``.tflite`` file) and
`carspot.classifier.tensorflow_runtime` (TensorFlow, chosen when it sees a GPU). `choose_runtime` decides.
"""

from __future__ import annotations

import glob
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

__all__ = ["RunOutputs", "Runtime", "RuntimeChoice", "RuntimeName", "choose_runtime", "gpu_visible"]

RuntimeChoice = Literal["auto", "onnxruntime", "litert", "tensorflow"]
RuntimeName = Literal["onnxruntime", "litert", "tensorflow"]


@dataclass(frozen=True)
class RunOutputs:
    probabilities: np.ndarray | None
    """batch x makes, temperature-calibrated softmax (None when not asked for and skipped)."""
    pooled: np.ndarray | None = None
    """batch x 1280: the features the brand head sees (when asked for and available)."""
    feature_map: np.ndarray | None = None
    """batch x H/32 x W/32 x 1280: the map before pooling (when asked for and available)."""


class Runtime(Protocol):
    name: str
    device: str
    classes: int
    max_batch: int
    features_unavailable: str
    """Why the pooled features cannot be given ("" when they can)."""
    separable: bool
    """The pooled features and map come from a car branch run on its own: asking only for them skips the brand
    network, and asking only for the probabilities skips the branch. Else one pass gives everything."""

    @property
    def has_pooled(self) -> bool: ...

    @property
    def has_feature_map(self) -> bool: ...

    def run(
        self, pixels: np.ndarray, *, probabilities: bool = True, pooled: bool = False, feature_map: bool = False
    ) -> RunOutputs:
        """``pixels``: N x S x S x 3 float32 raw RGB (0..255); at most ``max_batch`` rows. Not thread-safe. What is
        not asked for may be None (a `separable` runtime skips it) or given anyway."""
        ...


def gpu_visible() -> bool:
    """TensorFlow is installed and lists a GPU. TensorFlow is imported only when a GPU device node exists, so a
    CPU worker never pays for its import (seconds and a few hundred MB)."""
    if importlib.util.find_spec("tensorflow") is None or not glob.glob("/dev/nvidia[0-9]*"):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose_runtime(
    choice: RuntimeChoice,
    *,
    has_tensorflow_weights: bool,
    has_onnx: bool,
    gpu: Callable[[], bool] = gpu_visible,
) -> RuntimeName:
    """``auto``: TensorFlow when the model version ships its Keras weights and TensorFlow sees a GPU; else ONNX
    Runtime when it ships its ONNX file (the fastest on CPU, measured); else LiteRT. An explicit choice is kept;
    one whose file the version lacks is an error the caller reports."""
    if choice == "tensorflow" and not has_tensorflow_weights:
        raise ValueError("this model version has no TensorFlow weights (classifier.weights.h5)")
    if choice == "onnxruntime" and not has_onnx:
        raise ValueError("this model version has no ONNX file (classifier.onnx)")
    if choice != "auto":
        return choice
    if has_tensorflow_weights and gpu():
        return "tensorflow"
    return "onnxruntime" if has_onnx else "litert"
