"""`BrandClassifier.predict_regions`: brand top-k and P(car) from one backbone run of the released model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.classifier.car_head import CAR_CLASSES, car_probability, imagenet_head, with_feature_outputs
from carspot.classifier.litert_runtime import LiteRTRuntime
from carspot.classifier.serving import BrandClassifier, load_classifier

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def classifier() -> BrandClassifier:
    return load_classifier(MODELS)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_car_probability_high_on_a_car_photo_low_on_car_free_crops(
    classifier: BrandClassifier, shared_dir: Path, scenes_dir: Path
) -> None:
    car = rgb(shared_dir / "data" / "stanford-cars" / "images" / "00001.jpg")
    kite = rgb(scenes_dir / "kite.jpg")
    horses = rgb(scenes_dir / "horses.jpg")
    h, w = kite.shape[:2]
    background = [kite, kite[: h // 2, : w // 2], kite[h // 3 :, w // 3 :], horses, horses[:, : horses.shape[1] // 2]]
    tops, car_p = classifier.predict_regions([car, *background], top_k=5)
    assert car_p.shape == (6,) and car_p.dtype == np.float32
    assert float(car_p[0]) > 0.5
    assert float(car_p[1:].max()) < 0.2
    assert tops[0][0][0] == "Audi"
    assert all(len(top) == 5 and all(make in classifier.labels for make, _ in top) for top in tops)


def test_same_backbone_run_gives_the_same_brand_scores_as_predict(
    classifier: BrandClassifier, scenes_dir: Path
) -> None:
    image = rgb(scenes_dir / "times-square.png")
    crops = [image, image[:200, :300], image[100:, 200:]]
    tops, _ = classifier.predict_regions(crops, top_k=3)
    assert tops == classifier.predict(crops, top_k=3)


def test_empty_and_invalid_input(classifier: BrandClassifier) -> None:
    tops, car_p = classifier.predict_regions([])
    assert tops == [] and car_p.shape == (0,)
    with pytest.raises(ValueError):
        classifier.predict_regions([np.zeros((4, 4, 3), np.uint8)], top_k=0)


def test_feature_output_is_the_pooled_1280_vector_and_keeps_the_probabilities() -> None:
    model = next((MODELS / "versions").glob("*/classifier.tflite")).read_bytes()
    rewritten, positions = with_feature_outputs(model)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=rewritten, num_threads=1)
    interp.allocate_tensors()
    outputs = interp.get_output_details()
    assert list(outputs[positions.pooled]["shape"]) == [1, 1280]
    assert list(outputs[positions.probabilities]["shape"]) == [1, 53]
    assert positions.feature_map is not None and list(outputs[positions.feature_map]["shape"])[-1] == 1280


def test_imagenet_head_and_car_classes() -> None:
    head = imagenet_head()
    assert head.weight.shape == (1000, 1280) and head.bias.shape == (1000,)
    assert {817, 511, 656, 436} <= set(CAR_CLASSES)  # sports car, convertible, minivan, beach wagon
    probs = car_probability(np.zeros((2, 1280), np.float32), head)
    assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))


def test_an_imagenet_head_whose_bytes_changed_is_refused(tmp_path: Path) -> None:
    """Only the head's storages are read, so only their bytes are pinned: one bias changed is caught."""
    from carspot.classifier.backbone import source_weights_path
    from carspot.classifier.car_head import read_imagenet_head
    from carspot.classifier.errors import ModelIntegrityError

    original = source_weights_path().read_bytes()
    head = imagenet_head()
    at = original.find(head.bias[:4].tobytes())  # where the bias's storage starts
    assert at > 0
    tampered = bytearray(original)
    tampered[at : at + 4] = np.float32(head.bias[0] + 0.5).tobytes()
    (tmp_path / "tampered.pth").write_bytes(bytes(tampered))
    (tmp_path / "same.pth").write_bytes(original)
    np.testing.assert_array_equal(read_imagenet_head(tmp_path / "same.pth").weight, head.weight)
    with pytest.raises(ModelIntegrityError, match="ImageNet head's sha256"):
        read_imagenet_head(tmp_path / "tampered.pth")


def test_without_feature_output_there_is_no_predict_regions() -> None:
    model = next((MODELS / "versions").glob("*/classifier.tflite")).read_bytes()
    labels = [f"m{i}" for i in range(53)]
    runtime = LiteRTRuntime(model, threads=1)
    assert hasattr(BrandClassifier(runtime=runtime, version="v", labels=labels), "predict_regions")

    runtime._pooled_output = runtime._map_output = None  # as for a model whose head is not a dense layer
    runtime.features_unavailable = "no FULLY_CONNECTED layer"
    plain = BrandClassifier(runtime=runtime, version="v", labels=labels)
    assert not hasattr(plain, "predict_regions") and not hasattr(plain, "region_car_scores")
    assert len(plain.predict([np.zeros((40, 60, 3), np.uint8)])[0]) == 5


def test_one_whole_image_pass_ranks_the_box_around_a_pasted_car_first(
    classifier: BrandClassifier, shared_dir: Path, scenes_dir: Path
) -> None:
    scene = rgb(scenes_dir / "kite.jpg").copy()
    car = np.asarray(Image.open(shared_dir / "data" / "stanford-cars" / "images" / "00001.jpg").convert("RGB"))
    h, w = scene.shape[:2]
    ch, cw = h // 3, int(h // 3 * car.shape[1] / car.shape[0])
    scene[h - ch - 10 : h - 10, 20 : 20 + cw] = np.asarray(Image.fromarray(car).resize((cw, ch)))
    car_box = [20, h - ch - 10, 20 + cw, h - 10]
    elsewhere = [[w - cw - 20, 10, w - 20, 10 + ch], [w // 2, 0, w // 2 + cw, ch], [w - cw, h - ch, w, h]]
    scores = classifier.region_car_scores(scene, np.array([car_box, *elsewhere], np.float32))
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 0
    assert classifier.region_car_scores(scene, np.zeros((0, 4), np.float32)).shape == (0,)
    with pytest.raises(ValueError):
        classifier.region_car_scores(scene, np.array([car_box], np.float32), size=100)


class RecordingRuntime:
    """The classifier's runtime, recording what each call asked for and how many crops it ran."""

    def __init__(self, runtime: object) -> None:
        self._runtime = runtime
        self.calls: list[tuple[int, bool, bool]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._runtime, name)

    def run(self, pixels: np.ndarray, *, probabilities: bool = True, pooled: bool = False, feature_map: bool = False):  # type: ignore[no-untyped-def]
        self.calls.append((len(pixels), probabilities, pooled))
        return self._runtime.run(pixels, probabilities=probabilities, pooled=pooled, feature_map=feature_map)  # type: ignore[attr-defined]


def test_the_released_onnx_file_runs_its_brand_network_and_car_branch_as_two_parts(shared_dir: Path) -> None:
    released = load_classifier(MODELS, runtime="onnxruntime", threads=1)
    runtime = released._runtime
    assert runtime.separable
    pixels = np.random.default_rng(0).uniform(0, 255, (2, released.input_size, released.input_size, 3))
    pixels = pixels.astype(np.float32)
    brand_only = runtime.run(pixels)
    car_only = runtime.run(pixels, probabilities=False, pooled=True, feature_map=True)
    both = runtime.run(pixels, pooled=True, feature_map=True)
    assert brand_only.pooled is None and car_only.probabilities is None
    assert both.probabilities is not None and both.pooled is not None and both.feature_map is not None
    np.testing.assert_array_equal(brand_only.probabilities, both.probabilities)
    np.testing.assert_array_equal(car_only.pooled, both.pooled)
    np.testing.assert_array_equal(car_only.feature_map, both.feature_map)


def test_a_crop_under_its_car_floor_gets_no_makes_and_no_brand_pass(shared_dir: Path, scenes_dir: Path) -> None:
    classifier = load_classifier(MODELS, runtime="onnxruntime", threads=1)
    car = rgb(shared_dir / "data" / "stanford-cars" / "images" / "00001.jpg")
    kite = rgb(scenes_dir / "kite.jpg")
    every_top, every_car = classifier.predict_regions([car, kite, car])
    recording = RecordingRuntime(classifier._runtime)
    classifier._runtime = recording  # type: ignore[assignment]
    tops, car_p = classifier.predict_regions([car, kite, car], min_car=[0.05, 0.05, 1.5])
    np.testing.assert_array_equal(car_p, every_car)
    assert tops == [every_top[0], [], []]  # the kite is no car; the third crop's floor is out of reach
    # the car branch on all three crops, then the brand network on the one crop that reached its floor
    assert recording.calls == [(3, False, True), (1, True, False)]
    recording.calls.clear()
    assert classifier.predict_regions([kite], min_car=np.inf)[0] == [[]]
    assert recording.calls == [(1, False, True)]


def test_the_floors_are_the_same_on_a_runtime_that_runs_everything_at_once(shared_dir: Path, scenes_dir: Path) -> None:
    litert = load_classifier(MODELS, runtime="litert", threads=1)
    assert not litert._runtime.separable
    car = rgb(shared_dir / "data" / "stanford-cars" / "images" / "00001.jpg")
    kite = rgb(scenes_dir / "kite.jpg")
    tops, _ = litert.predict_regions([car, kite], min_car=0.05)
    assert len(tops[0]) == 5 and tops[1] == []
