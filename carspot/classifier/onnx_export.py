"""The brand model as an int8 ONNX file for ONNX Runtime, the CPU runtime (`carspot.classifier.onnx_runtime`).

Why: measured on this project's 2-core AVX2 CPU (no VNNI), one core runs the int8 ONNX file at ~8.5 ms per
224 px crop against ~15 ms for LiteRT's int8 or float file, with the same top-5 on the by-model photos (see
models/README.md). The float ONNX file is no faster than LiteRT (15.6 ms): the gain is ONNX Runtime's int8
kernels.

How: the version's own Keras weights (``classifier.weights.h5``) -> a ``tf.function`` with three named outputs
(``probabilities``, ``pooled``, ``feature_map``; any batch and input side) -> ONNX by tf2onnx (the maintained
TensorFlow converter) -> static int8 quantization by ONNX Runtime's own tool: QDQ, per-channel weights,
uint8 activations calibrated (min/max) on the same training photos as the LiteRT file. Weights use 7 bits
(``reduce_range``): without VNNI, ONNX Runtime multiplies uint8 by int8 with an instruction that saturates pairs
of 8-bit products, and the full range cost 2.5 points of top-1 (measured). The pooling and the brand head stay
float, as in the LiteRT file (int8 probabilities would tie the tail of the top-5).

Needs the ``train`` extra (TensorFlow, tf2onnx, onnx); serving the file needs ONNX Runtime only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from carspot.classifier.onnx_runtime import ONNX_OUTPUTS
from carspot.classifier.registry import (
    CAR_BRANCH,
    ONNX_FILE,
    ONNX_MODEL,
    TENSORFLOW_WEIGHTS,
    file_sha256,
    read_manifest,
    version_dir,
    write_manifest,
)

__all__ = ["add_onnx", "export_onnx"]

FLOAT_LAYERS = ("pool", "make_logits", "temperature", "make_probs")
"""Keras layers whose ONNX nodes stay float: the pooling, the brand head and its softmax."""
OPSET = 17
QUANTIZATION = "int8 QDQ, per-channel 7-bit weights, uint8 activations (min/max calibration), float head"


def _float_nodes(model: Any) -> list[str]:
    """The ONNX nodes converted from `FLOAT_LAYERS` (tf2onnx names a node after its Keras layer, ``<layer>_1``)."""
    return [node.name for node in model.graph.node if any(f"/{layer}_1/" in node.name for layer in FLOAT_LAYERS)]


def export_onnx(serving: Any, path: Path, *, calibration: Sequence[np.ndarray]) -> None:
    """``serving``: `carspot.classifier.keras_model.build_serving_model`'s three-output model. ``calibration``:
    raw-pixel inputs (``1 x 224 x 224 x 3`` float32). Writes the int8 file to ``path``."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 export needs calibration images")
    spec = (tf.TensorSpec([None, None, None, 3], tf.float32, name="pixels"),)

    @tf.function(input_signature=spec)
    def serve(pixels: Any) -> dict[str, Any]:
        return dict(zip(ONNX_OUTPUTS, serving(pixels, training=False), strict=True))

    class Views(CalibrationDataReader):
        def __init__(self) -> None:
            self._views = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            view = next(self._views, None)
            return None if view is None else {"pixels": np.asarray(view, dtype=np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        float_file, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET, output_path=str(float_file))
        quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
        keep_float = _float_nodes(onnx.load(str(prepared)))
        if len(keep_float) < len(FLOAT_LAYERS):
            raise RuntimeError(f"the converted graph's head nodes were not found (found {keep_float})")
        quantize_static(
            str(prepared),
            str(path),
            Views(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            nodes_to_exclude=keep_float,
            calibrate_method=CalibrationMethod.MinMax,
        )


def add_onnx(model_dir: Path | str, version: str, *, calibration: Sequence[np.ndarray]) -> dict[str, Any]:
    """Exports the version's Keras weights to `ONNX_FILE` beside them and records it in the manifest (returned
    entry). Training calls it; it also gives an already released version its ONNX file without retraining.

    ``calibration`` must be at the version's input side (`carspot.classifier.training.calibration_inputs` with
    ``size=`` the manifest's): the exported graph takes any side, so photos at another one would calibrate the
    int8 ranges for inputs the version never serves, silently."""
    from carspot.classifier.backbone import imagenet_network
    from carspot.classifier.keras_model import build_serving_model
    from carspot.classifier.serving import manifest_input_size

    manifest = read_manifest(model_dir, version)
    folder = version_dir(model_dir, version)
    weights = manifest.get(TENSORFLOW_WEIGHTS)
    if not weights:
        raise ValueError(f"{folder}: this version has no Keras weights to export")
    side = manifest_input_size(manifest, folder)
    shapes = sorted({tuple(x.shape) for x in calibration} - {(1, side, side, 3)})
    if shapes:
        raise ValueError(
            f"{folder}: calibration inputs must be 1 x {side} x {side} x 3, the version's side; got {shapes}"
        )
    serving = build_serving_model(
        weights=folder / weights["file"],
        classes=len(manifest["labels"]),
        temperature=float(manifest["temperature"]),
        car_branch_imagenet=imagenet_network() if CAR_BRANCH in manifest else None,
    )
    export_onnx(serving, folder / ONNX_FILE, calibration=calibration)
    entry = {
        "file": ONNX_FILE,
        "sha256": file_sha256(folder / ONNX_FILE),
        "size_bytes": (folder / ONNX_FILE).stat().st_size,
        "precision": "int8",
        "quantization": QUANTIZATION,
        "calibration_images": len(calibration),
    }
    manifest[ONNX_MODEL] = entry
    write_manifest(folder, manifest)
    return entry
