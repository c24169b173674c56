"""Brand classifier: load, predict top-k; training (transfer learning), evaluation, model registry.

Importing this package is cheap and never imports TensorFlow: serving (`load_classifier`) needs only ONNX Runtime or
LiteRT on CPU, and imports TensorFlow only to serve on a GPU it sees (`carspot.classifier.runtime`); `train` and
`build_backbone` import TensorFlow inside the call (through `carspot.classifier.keras_model`). The public
entry points the pipeline wires:

- `build_backbone(model_dir)`                       ``carspot models build``
- `train(data, *, model_dir, ...)`                  ``carspot train``
- `evaluate(samples, predict_top_k, ...)` / `evaluate_path(path, predict_top_k, ...)`   ``carspot evaluate``
- `promote(model_dir, candidate, evaluate_fn, *, force=False)`                        ``carspot models promote``
- `load_classifier(model_dir, version=None, *, runtime="auto")` -> `BrandClassifier`, `current_version(model_dir)`,
  `merge_top_k(per_region)` (an image's top-5 over its car regions)                   the worker
"""

from __future__ import annotations

from carspot.classifier.backbone import build_backbone
from carspot.classifier.data import Sample, load_samples, split_by_image, split_by_model
from carspot.classifier.errors import (
    ClassifierError,
    DatasetError,
    InvalidCropError,
    ManifestError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
    PromotionRefused,
)
from carspot.classifier.evaluate import EvaluationReport, MakeStats, evaluate, evaluate_path
from carspot.classifier.registry import PromotionResult, current_version, list_versions, promote, read_manifest
from carspot.classifier.serving import BrandClassifier, load_classifier, merge_top_k
from carspot.classifier.training import TrainConfig, TrainResult, train

__all__ = [
    "BrandClassifier",
    "ClassifierError",
    "DatasetError",
    "EvaluationReport",
    "InvalidCropError",
    "MakeStats",
    "ManifestError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PromotionRefused",
    "PromotionResult",
    "Sample",
    "TrainConfig",
    "TrainResult",
    "build_backbone",
    "current_version",
    "evaluate",
    "evaluate_path",
    "list_versions",
    "load_classifier",
    "load_samples",
    "merge_top_k",
    "promote",
    "read_manifest",
    "split_by_image",
    "split_by_model",
    "train",
]
