"""The car check has a network of its own: the frozen ImageNet network on a downscaled copy of the crop. Whatever
the brand network and its head have learnt (here: nothing, random weights), car-free images are refuted and car
photos accepted, and two brand networks give the same car probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carspot.classifier.augment import to_input
from carspot.classifier.data import load_image, load_samples

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")
SIZE = 256
REFUTE = 0.005  # the analysis' lowest threshold: a detector box under it is dropped
ACCEPT = 0.05  # the whole image's threshold


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from carspot.classifier.backbone import load_backbone

    return load_backbone(tmp_path_factory.mktemp("models"), input_size=SIZE)


def _classifier(imagenet: Any, *, seed: int) -> Any:
    """A classifier whose brand network and head are random (seeded), with the car branch."""
    import keras

    from carspot.classifier import keras_model

    keras.utils.set_random_seed(seed)
    brand = keras_model.build_efficientnet_lite0(include_top=False, input_size=SIZE)
    rng = np.random.default_rng(seed)
    return keras_model.build_classifier(
        backbone=brand,
        head_kernel=rng.normal(size=(1280, 5)).astype(np.float32),
        head_bias=rng.normal(size=5).astype(np.float32),
        temperature=1.0,
        car_branch=keras_model.build_car_branch(imagenet=imagenet),
    )


def _car_probability(model: Any, images: list[np.ndarray]) -> np.ndarray:
    from carspot.classifier.car_head import LOGIT_SCALE, car_probability, imagenet_head

    pixels = np.stack([to_input(im, size=SIZE) for im in images]).astype(np.float32)
    probs, pooled, feature_map = model.predict(pixels, batch_size=16, verbose=0)
    assert probs.shape == (len(images), 5)
    assert pooled.shape == (len(images), 1280)
    assert feature_map.shape == (len(images), SIZE // 64, SIZE // 64, 1280)  # the branch runs at half the side
    return car_probability(pooled, imagenet_head(), scale=LOGIT_SCALE)


def test_car_free_images_are_refuted_and_car_photos_accepted_whatever_the_brand_network(
    imagenet: Any, shared_dir: Path, scenes_dir: Path
) -> None:
    from carspot.analysis.car_free import car_free_images

    model = _classifier(imagenet, seed=1)
    free = [image for _, image in car_free_images(scenes_dir=scenes_dir)]
    stanford = load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")[::400]
    web = load_samples(shared_dir / "data" / "cars-web" / "labels.csv")[::90]
    cars = [load_image(s.path) for s in (*stanford, *web)]
    p_free, p_cars = _car_probability(model, free), _car_probability(model, cars)
    assert len(free) >= 38 and len(cars) >= 40
    assert (p_free >= REFUTE).sum() <= 1, sorted(p_free)[-3:]
    assert (p_cars >= ACCEPT).mean() >= 0.9, sorted(p_cars)[:5]


def test_the_car_probability_does_not_depend_on_the_brand_network(imagenet: Any, shared_dir: Path) -> None:
    photos = [load_image(s.path) for s in load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")[:6]]
    a = _car_probability(_classifier(imagenet, seed=1), photos)
    b = _car_probability(_classifier(imagenet, seed=2), photos)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("side", [SIZE, 448])
def test_the_branch_is_the_imagenet_network_on_the_input_averaged_two_to_one(
    imagenet: Any, shared_dir: Path, side: int
) -> None:
    """The average folded into the branch's stem is the same arithmetic as averaging first (the serving side, and
    region search's whole-image side)."""
    import keras

    from carspot.classifier import keras_model
    from carspot.classifier.backbone import imagenet_network

    photos = [load_image(s.path) for s in load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")[:3]]
    pixels = np.stack([to_input(im, size=side) for im in photos]).astype(np.float32)
    averaged = pixels.reshape(len(photos), side // 2, 2, side // 2, 2, 3).mean(axis=(2, 4))
    plain = imagenet_network(input_size=None)
    expected = keras.Model(plain.input, [plain.get_layer("pool").output, plain.get_layer("head_relu6").output])
    pooled, feature_map = keras_model.build_car_branch(imagenet=imagenet).predict(pixels, verbose=0)
    want_pooled, want_map = expected.predict(averaged, verbose=0)
    assert feature_map.shape == want_map.shape == (len(photos), side // 64, side // 64, 1280)
    np.testing.assert_allclose(pooled, want_pooled, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(feature_map, want_map, atol=5e-3, rtol=1e-3)
