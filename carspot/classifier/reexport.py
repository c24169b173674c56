"""A new version from a released version's brand weights, its files made again by today's export code.

Why: what serves a version (the int8 ONNX and LiteRT files, with the frozen car branch beside the brand network)
is made from its Keras weights by code that improves after the version was trained (the car branch's average
folded into its stem, 2026-12-07). Versions are never rewritten in place (their files are sha256-pinned in the
manifest and may be serving), so the improvement ships as a new version: the same brand weights, the recipe and
validation split of the original (``derived_from`` in its manifest), files exported again with the original's int8
calibration photos, the car head scale fitted again on them, and its held-out photos scored again through the
new ONNX file. It then goes through `carspot models promote` like any other version.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carspot.classifier.registry import (
    CAR_BRANCH,
    CAR_HEAD,
    MODEL_FILE,
    ONNX_MODEL,
    TENSORFLOW_WEIGHTS,
    file_sha256,
    read_manifest,
    read_verified,
    version_dir,
    write_manifest,
)

__all__ = ["reexport"]


def reexport(
    model_dir: Path | str, version: str, *, sources: Sequence[Path | str], new_version: str | None = None
) -> str:
    """Writes ``new_version`` (default: now, as training names versions) beside ``version`` and returns its name.

    ``sources``: the datasets ``version`` was trained on (their ``labels.csv``), checked against its manifest, from
    which its calibration photos and validation split are rebuilt."""
    import keras

    from carspot.classifier import keras_model
    from carspot.classifier.backbone import imagenet_network
    from carspot.classifier.car_scale import fit_car_head
    from carspot.classifier.onnx_export import add_onnx
    from carspot.classifier.serving import load_classifier
    from carspot.classifier.training import VersionData, as_inputs

    original = read_manifest(model_dir, version, verify=True)
    weights = original.get(TENSORFLOW_WEIGHTS)
    if not weights:
        raise ValueError(f"{version}: no Keras weights to export again")
    name = new_version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = version_dir(model_dir, name)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    data = VersionData.rebuild(original, sources)  # reads and hashes every training image: once
    photos = data.calibration_photos()
    side = int(original["input"]["size"])
    calibration = as_inputs(photos, size=side)

    out.mkdir(parents=True)
    try:
        shutil.copyfile(version_dir(model_dir, version) / weights["file"], out / weights["file"])
        read_verified(out / weights["file"], weights["sha256"])
        manifest = copy.deepcopy(original)
        for stale in (ONNX_MODEL, CAR_HEAD):
            manifest.pop(stale, None)
        manifest.update(
            version=name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            # the training run's figures stay (the weights are the same); the files' own are scored again below
            metrics={k: v for k, v in original.get("metrics", {}).items() if "/released" not in k},
            derived_from={
                "version": version,
                "what": "the same brand weights; ONNX and LiteRT files exported again by today's code, car head "
                "scale fitted again, held-out photos scored again",
            },
        )
        write_manifest(out, manifest)
        serving = keras_model.build_serving_model(
            weights=out / weights["file"],
            classes=len(manifest["labels"]),
            temperature=float(manifest["temperature"]),
            car_branch_imagenet=imagenet_network() if CAR_BRANCH in manifest else None,
        )
        # at the version's side, as training exports it: LiteRT prepares the file at that shape before any resize
        # (any side: a 1 x 1 default input is too small for the branch's 6 x 6 stem)
        pixels = keras.Input((side, side, 3), name="pixels")
        keras_model.export_tflite(keras.Model(pixels, serving(pixels)), out / MODEL_FILE, calibration=calibration)
        manifest.update(
            model_file=MODEL_FILE,
            sha256=file_sha256(out / MODEL_FILE),
            size_bytes=(out / MODEL_FILE).stat().st_size,
            precision="int8",
        )
        write_manifest(out, manifest)
        manifest[ONNX_MODEL] = add_onnx(model_dir, name, calibration=calibration)
        write_manifest(out, manifest)
        manifest[CAR_HEAD] = fit_car_head(model_dir, name, car_photos=photos)
        report, scores = _scores(load_classifier(model_dir, name, runtime="onnxruntime"), data.held_out())
        manifest["metrics"].update(scores)
        report.save_confusion_png(out / "confusion.png")
        (out / "validation.json").write_text(report.to_json() + "\n")
        write_manifest(out, manifest)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written: a version is whole or absent
        raise
    return name


def _scores(classifier: Any, held_out: dict[str, list[Any]]) -> tuple[Any, dict[str, Any]]:
    """The served ONNX file's report on all the held-out photos (whole photos, as training reports), and each
    dataset's top-1/top-5 apart, as manifest metrics."""
    from carspot.classifier.evaluate import evaluate_by

    named = [(name, s) for name, part in held_out.items() for s in part]
    dataset_of = {id(s): name for name, s in named}
    report, apart = evaluate_by([s for _, s in named], classifier.predict_one, keys=lambda s: [dataset_of[id(s)]])
    # named as training names them: "stanford-cars by-model/released-onnx-int8", "combined/released"
    metrics = {f"{name.replace('-by-', ' by-')}/released-onnx-int8": part.summary() for name, part in apart.items()}
    metrics["combined/released-onnx-int8"] = metrics["combined/released"] = report.summary()
    return report, metrics
