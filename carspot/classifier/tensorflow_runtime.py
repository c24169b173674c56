"""The brand model on TensorFlow, for a machine whose TensorFlow sees a GPU.

LiteRT's XNNPACK is the fast path on CPU; on a GPU the same network in TensorFlow runs large batches at once.
The weights are the float Keras weights training saved with the version (``classifier.weights.h5``, sha256 in
the manifest), so both runtimes serve the same trained model (LiteRT's file may be its int8 export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from carspot.classifier.runtime import RunOutputs

__all__ = ["TensorFlowRuntime"]


class TensorFlowRuntime:
    """One traced function for every batch and image size (no retracing per shape)."""

    name = "tensorflow"
    features_unavailable = ""
    separable = False
    has_pooled = True
    has_feature_map = True

    def __init__(
        self, *, weights: Path, classes: int, temperature: float, car_branch: bool = False, max_batch: int = 128
    ) -> None:
        import tensorflow as tf

        from carspot.classifier import keras_model
        from carspot.classifier.backbone import imagenet_network

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # share the card with other workers instead of reserving all its memory
            tf.config.experimental.set_memory_growth(gpu, True)
        self.device = "/GPU:0" if gpus else "/CPU:0"
        self.classes = classes
        self.max_batch = max_batch
        with tf.device(self.device):
            self._model = keras_model.build_serving_model(
                weights=weights,
                classes=classes,
                temperature=temperature,
                car_branch_imagenet=imagenet_network() if car_branch else None,
            )
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        self._forward: Any = tf.function(lambda x: self._model(x, training=False), input_signature=[spec])
        self._tf = tf

    def run(
        self, pixels: np.ndarray, *, probabilities: bool = True, pooled: bool = False, feature_map: bool = False
    ) -> RunOutputs:
        del probabilities  # one pass gives them anyway (not `separable`)
        with self._tf.device(self.device):
            probs, feats, fmap = self._forward(self._tf.constant(pixels, self._tf.float32))
        return RunOutputs(
            probabilities=probs.numpy().astype(np.float32),
            pooled=feats.numpy().astype(np.float32) if pooled else None,
            feature_map=fmap.numpy().astype(np.float32) if feature_map else None,
        )
