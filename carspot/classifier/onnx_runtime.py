"""The brand model on ONNX Runtime (CPU): the default CPU runtime when the version ships its int8 ONNX file.

Why: measured on this project's 2-core AVX2 CPU, the int8 ONNX file (`carspot.classifier.onnx_export`) runs a
224 px crop in ~8.5 ms per core against ~15 ms on LiteRT, same accuracy (models/README.md). The file has three
named outputs (`ONNX_OUTPUTS`); only the ones asked for are fetched, so region search needs no second model.
Any batch and input side run in one session (ONNX Runtime sizes its buffers per call).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carspot.classifier.runtime import RunOutputs

__all__ = ["ONNX_OUTPUTS", "OnnxRuntime"]

ONNX_OUTPUTS = ("probabilities", "pooled", "feature_map")
"""The file's outputs: N x makes calibrated softmax, N x 1280 pooled features, N x H/32 x W/32 x 1280 map."""


class OnnxRuntime:
    """Runs an ``.onnx`` brand model; not thread-safe (the caller holds a lock)."""

    name = "onnxruntime"
    device = "cpu"
    features_unavailable = ""

    def __init__(self, model: bytes, *, threads: int | None = 2, max_batch: int = 32) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
        options.inter_op_num_threads = 1
        # Idle pool threads must not spin: the detector runs between classifier calls on the same cores.
        # Measured, one process with 2 threads, 400 composites: detector mode 26.5 images/s without spinning,
        # 21.6 with it; standard mode (the classifier alone) 165 vs 176.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session: Any = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own errors (InvalidProtobuf, Fail, ...) derive from Exception only
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        if set(outputs) != set(ONNX_OUTPUTS):
            raise ValueError(f"expected the outputs {ONNX_OUTPUTS}, the file has {sorted(outputs)}")
        self.classes = int(outputs["probabilities"][-1])
        self.max_batch = max_batch

    has_pooled = True
    has_feature_map = True

    def run(self, pixels: np.ndarray, *, pooled: bool = False, feature_map: bool = False) -> RunOutputs:
        wanted = ["probabilities", *(["pooled"] if pooled else []), *(["feature_map"] if feature_map else [])]
        values = dict(zip(wanted, self._session.run(wanted, {"pixels": np.ascontiguousarray(pixels)}), strict=True))
        return RunOutputs(
            probabilities=values["probabilities"], pooled=values.get("pooled"), feature_map=values.get("feature_map")
        )
