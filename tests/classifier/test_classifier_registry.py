"""Registry: versions with manifests, an atomic CURRENT, champion/challenger promotion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carspot.classifier.errors import ModelIntegrityError, ModelNotFoundError, PromotionRefused
from carspot.classifier.evaluate import EvaluationReport, report_from_predictions
from carspot.classifier.registry import (
    MODEL_FILE,
    current_version,
    file_sha256,
    list_versions,
    promote,
    read_manifest,
    set_current,
    version_dir,
    write_manifest,
)
from tests.classifier.car_checks import check_report


def _version(model_dir: Path, name: str, *, weights: bytes | None = None, derived_from: str | None = None) -> None:
    """A version whose model file is its name; ``weights`` its Keras weights file (what a re-export shares),
    ``derived_from`` the version it was re-exported from."""
    directory = version_dir(model_dir, name)
    directory.mkdir(parents=True)
    (directory / MODEL_FILE).write_bytes(name.encode())
    keras: dict[str, object] = {}
    if weights is not None:
        (directory / "classifier.weights.h5").write_bytes(weights)
        keras = {
            "tensorflow_weights": {
                "file": "classifier.weights.h5",
                "sha256": file_sha256(directory / "classifier.weights.h5"),
            }
        }
    write_manifest(
        directory,
        {
            **keras,
            **({"derived_from": {"version": derived_from}} if derived_from else {}),
            "version": name,
            "created": "2026-01-01T00:00:00+00:00",
            "training_data_sha256": "0" * 64,
            "labels": ["Audi", "BMW"],
            "metrics": {},
            "model_file": MODEL_FILE,
            "sha256": file_sha256(directory / MODEL_FILE),
        },
    )


def _report(top1_hits: int, top5_hits: int) -> EvaluationReport:
    """Four Audi images: the first ``top1_hits`` right at rank 1, up to ``top5_hits`` found at rank 2."""
    preds = []
    for i in range(4):
        if i < top1_hits:
            preds.append([("Audi", 0.9), ("BMW", 0.1)])
        elif i < top5_hits:
            preds.append([("BMW", 0.6), ("Audi", 0.4)])
        else:
            preds.append([("BMW", 1.0)])
    return report_from_predictions(["Audi"] * 4, preds)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    for name in ("v1", "v2-worse", "v3-better"):
        _version(tmp_path, name)
    set_current(tmp_path, "v1")
    return tmp_path


SCORES = {"v1": _report(2, 3), "v2-worse": _report(1, 3), "v3-better": _report(2, 4)}


def test_promote_refuses_a_worse_model_and_keeps_the_champion(model_dir: Path) -> None:
    result = promote(model_dir, "v2-worse", SCORES.__getitem__)
    assert not result.promoted and result.champion == "v1"
    assert current_version(model_dir) == "v1"
    assert "not better" in result.reason
    assert "champion v1" in result.table() and "REFUSED" in result.table()
    with pytest.raises(PromotionRefused):
        promote(model_dir, "v2-worse", SCORES.__getitem__, raise_on_refusal=True)


def test_promote_accepts_a_better_model_and_force_is_logged(model_dir: Path) -> None:
    assert promote(model_dir, "v3-better", SCORES.__getitem__).promoted
    assert current_version(model_dir) == "v3-better"
    forced = promote(model_dir, "v2-worse", SCORES.__getitem__, force=True)
    assert forced.promoted and forced.forced
    assert current_version(model_dir) == "v2-worse"
    log = [json.loads(line) for line in (model_dir / "promotions.log").read_text().splitlines()]
    assert [e["forced"] for e in log] == [False, True]
    assert log[-1]["champion"] == "v3-better" and log[-1]["candidate_metrics"]["top5"] == 0.75


def test_promote_refuses_better_brands_when_the_car_head_got_worse(model_dir: Path) -> None:
    # what 20261130T134043Z did: 2 points better in brands, but its car head refuted a third of car-free images
    checks = {"v1": check_report(0.97, 0.02), "v3-better": check_report(0.99, 0.66)}
    result = promote(model_dir, "v3-better", SCORES.__getitem__, car_check_fn=checks.__getitem__)
    assert not result.promoted and current_version(model_dir) == "v1"
    assert result.reason == ("its car head is worse than the champion's: car-free images not refuted 0.6600 vs 0.0200")
    table = result.table()
    assert "false_car_rate" in table and "0.6600" in table and "REFUSED" in table
    log = json.loads((model_dir / "promotions.log").read_text().splitlines()[-1])
    assert log["candidate_car_check"]["false_car_rate"] == 0.66 and log["champion_car_check"]["car_recall"] == 0.97


def test_promote_accepts_better_brands_with_a_car_head_as_good_within_a_point(model_dir: Path) -> None:
    checks = {"v1": check_report(0.97, 0.02), "v3-better": check_report(0.96, 0.02)}
    assert promote(model_dir, "v3-better", SCORES.__getitem__, car_check_fn=checks.__getitem__).promoted


def test_promote_refuses_a_challenger_without_the_car_scores_the_champion_gives(model_dir: Path) -> None:
    checks = {"v1": check_report(0.97, 0.02), "v3-better": None}
    result = promote(model_dir, "v3-better", SCORES.__getitem__, car_check_fn=checks.__getitem__)
    assert not result.promoted and result.reason.endswith("it gives no car scores")
    assert "-" in result.table().splitlines()[-2]  # the challenger's car rows are empty


def _report_of(n: int, top1_hits: int, top5_hits: int) -> EvaluationReport:
    """``n`` Audi images, the first ``top1_hits`` right at rank 1, up to ``top5_hits`` at rank 2."""
    right, second, wrong = [("Audi", 0.9), ("BMW", 0.1)], [("BMW", 0.6), ("Audi", 0.4)], [("BMW", 1.0)]
    return report_from_predictions(
        ["Audi"] * n, [right if i < top1_hits else second if i < top5_hits else wrong for i in range(n)]
    )


def test_a_reexport_of_the_champions_weights_must_match_it_not_beat_it(tmp_path: Path) -> None:
    """The same trained network in new files: an int8 recalibration moves a few answers either way."""
    _version(tmp_path, "trained", weights=b"trained")
    _version(tmp_path, "reexported", weights=b"trained", derived_from="trained")
    _version(tmp_path, "reexported-badly", weights=b"trained", derived_from="trained")
    _version(tmp_path, "copied", weights=b"trained")  # the same weights, but no re-export of the champion
    _version(tmp_path, "retrained", weights=b"retrained", derived_from="trained")
    set_current(tmp_path, "trained")
    scores = {
        "trained": _report_of(1000, 640, 830),
        "reexported": _report_of(1000, 638, 828),  # 0.2 points behind on both
        "reexported-badly": _report_of(1000, 640, 820),  # 1 point behind on top-5
        "retrained": _report_of(1000, 638, 828),
        "copied": _report_of(1000, 640, 830),
    }
    assert not promote(tmp_path, "retrained", scores.__getitem__).promoted  # new weights must win
    assert not promote(tmp_path, "copied", scores.__getitem__).promoted  # a tie keeps the champion
    assert not promote(tmp_path, "reexported-badly", scores.__getitem__).promoted
    checks = {"trained": check_report(0.97, 0.02), "reexported": check_report(0.90, 0.02)}
    worse_car_check = promote(tmp_path, "reexported", scores.__getitem__, car_check_fn=checks.__getitem__)
    assert not worse_car_check.promoted and "car head is worse" in worse_car_check.reason
    result = promote(tmp_path, "reexported", scores.__getitem__)
    assert result.promoted and not result.forced and current_version(tmp_path) == "reexported"
    assert result.reason.startswith("a re-export of the champion's weights, within 0.005 of it: top-5 0.8280 vs 0.8300")


def test_first_promotion_needs_no_champion(tmp_path: Path) -> None:
    _version(tmp_path, "only")
    assert current_version(tmp_path) is None
    result = promote(tmp_path, "only", {"only": _report(0, 0)}.__getitem__)
    assert result.promoted and result.champion_report is None
    assert list_versions(tmp_path) == ["only"]


def test_a_tampered_model_is_refused(model_dir: Path) -> None:
    (version_dir(model_dir, "v3-better") / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError):
        promote(model_dir, "v3-better", SCORES.__getitem__)
    with pytest.raises(ModelNotFoundError):
        read_manifest(model_dir, "nope")


def test_an_images_top_5_is_the_most_confident_makes_over_its_regions() -> None:
    from carspot.classifier.serving import merge_top_k

    regions = [
        [("Audi", 0.5), ("BMW", 0.3), ("Kia", 0.1)],
        [("BMW", 0.7), ("Audi", 0.2), ("Fiat", 0.05)],
        [("Ford", 0.3), ("Kia", 0.3), ("Tesla", 0.2)],
    ]
    assert merge_top_k(regions) == [("BMW", 0.7), ("Audi", 0.5), ("Ford", 0.3), ("Kia", 0.3), ("Tesla", 0.2)]
    assert merge_top_k([], top_k=5) == []
