"""The model registry: a directory of immutable versions and a ``CURRENT`` pointer.

Layout of ``CARSPOT_MODEL_DIR``::

    CURRENT                       one line: the current version's name
    versions/<version>/           classifier.tflite + manifest.json (never changed once written)
    backbone/                     the ImageNet backbone from `carspot models build` (not committed)
    promotions.log                one JSON line per promotion decision, forced ones included (committed with the
                                  repository's registry: its release history)

``CURRENT`` is replaced atomically (write a temporary file, ``os.replace``), so a worker polling
`current_version` sees either the old or the new name, never half a file; swapping the loaded model between
batches is the worker's job, with the version recorded on every prediction.

Champion/challenger: `promote` evaluates the current model and the candidate with the *same* callable on the
same data and makes the candidate current only if it is better (top-5 first, then top-1) and, when asked, its
car head is not worse (`carspot.classifier.car_check`), unless forced. A re-export of the champion's own weights
(`carspot models reexport CHAMPION`: its manifest says so, and the weights' sha256 are the same) must match it
instead of beating it (`REEXPORT_TOLERANCE`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from carspot.classifier.car_check import CarCheckReport, car_check_regression
from carspot.classifier.errors import ManifestError, ModelIntegrityError, ModelNotFoundError, PromotionRefused
from carspot.classifier.evaluate import EvaluationReport

__all__ = [
    "CAR_BRANCH",
    "CAR_HEAD",
    "CURRENT_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "ONNX_FILE",
    "ONNX_MODEL",
    "SERVED_FILES",
    "TENSORFLOW_WEIGHTS",
    "VERSIONS_DIR",
    "PromotionResult",
    "current_version",
    "file_sha256",
    "list_versions",
    "promote",
    "read_manifest",
    "set_current",
    "version_dir",
    "write_manifest",
]

CURRENT_FILE: Final = "CURRENT"
VERSIONS_DIR: Final = "versions"
MANIFEST_FILE: Final = "manifest.json"
MODEL_FILE: Final = "classifier.tflite"
WEIGHTS_FILE: Final = "classifier.weights.h5"
"""The float Keras weights (TensorFlow runtime, for GPUs); the manifest's ``tensorflow_weights`` names it."""
ONNX_FILE: Final = "classifier.onnx"
"""The int8 ONNX file (ONNX Runtime, the CPU default since 2026-11-30); the manifest's ``onnx`` names it."""
TENSORFLOW_WEIGHTS: Final = "tensorflow_weights"
ONNX_MODEL: Final = "onnx"
CAR_HEAD: Final = "car_head"
"""Manifest key of the car head's fitted scale (`carspot.classifier.car_scale`): ``{"logit_scale", ...}``."""
CAR_BRANCH: Final = "car_branch"
"""Manifest key: the version's car check runs on a frozen ImageNet branch of its own (``input_downscale``: on a
copy of the crop that many times smaller), not on the fine-tuned brand features; serving reads the branch's
pooled features from the model's ``pooled`` output."""
SERVED_FILES: Final = (TENSORFLOW_WEIGHTS, ONNX_MODEL)
"""Manifest keys of the files a version may ship beside ``model_file``: ``{"file", "sha256", "size_bytes",
"precision", ...}`` each; versions released before one existed have none and serve on what they have."""
REQUIRED: Final = ("version", "created", "training_data_sha256", "labels", "metrics", "model_file", "sha256")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_dir(model_dir: Path | str, version: str) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise ModelNotFoundError(f"not a version name: {version!r}")
    return Path(model_dir) / VERSIONS_DIR / version


def list_versions(model_dir: Path | str) -> list[str]:
    """Versions that have a manifest, oldest name first (names sort by creation time)."""
    root = Path(model_dir) / VERSIONS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_FILE).is_file())


def current_version(model_dir: Path | str) -> str | None:
    """The current version's name, or None when nothing was promoted yet. Cheap: workers may poll it."""
    path = Path(model_dir) / CURRENT_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def set_current(model_dir: Path | str, version: str) -> None:
    """Atomically points ``CURRENT`` at ``version`` (which must exist)."""
    read_manifest(model_dir, version)
    path = Path(model_dir) / CURRENT_FILE
    tmp = path.with_name(f".{CURRENT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(version + "\n")
    os.replace(tmp, path)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ManifestError(f"manifest lacks {missing}")
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_verified(path: Path, sha256: str) -> bytes:
    """The file's bytes, after checking them against the manifest's sha256 (missing or altered: an error)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{path}: missing") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelIntegrityError(f"{path}: sha256 differs from its manifest")
    return data


def read_manifest(model_dir: Path | str, version: str, *, verify: bool = False) -> dict[str, Any]:
    """A version's manifest; with ``verify`` the sha256 of the model file (and of each `SERVED_FILES` entry
    the version has) is checked against it."""
    directory = version_dir(model_dir, version)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{directory}: no such model version")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not isinstance(manifest, dict) or any(k not in manifest for k in REQUIRED):
        raise ManifestError(f"{path}: missing one of {REQUIRED}")
    if manifest["version"] != version:
        raise ManifestError(f"{path}: says version {manifest['version']!r}, lives in {version!r}")
    if verify:
        files = [(manifest["model_file"], manifest["sha256"])]
        for key in SERVED_FILES:
            entry = manifest.get(key)
            if isinstance(entry, dict):
                files.append((entry.get("file", ""), entry.get("sha256", "")))
        for name, sha256 in files:
            if not name:
                raise ManifestError(f"{path}: a file entry has no name")
            read_verified(directory / name, sha256)
    return manifest


@dataclass(frozen=True)
class PromotionResult:
    """What `promote` decided, with both sides' numbers on the same data."""

    candidate: str
    champion: str | None
    promoted: bool
    forced: bool
    reason: str
    candidate_report: EvaluationReport
    champion_report: EvaluationReport | None
    candidate_car_check: CarCheckReport | None = None
    champion_car_check: CarCheckReport | None = None

    def table(self) -> str:
        """Champion and challenger side by side."""
        keys: tuple[str, ...] = ("n", "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "ece")
        cand: dict[str, Any] = self.candidate_report.summary()
        champ: dict[str, Any] = self.champion_report.summary() if self.champion_report else {}
        if self.candidate_car_check is not None or self.champion_car_check is not None:
            keys += ("car_recall", "false_car_rate")
            cand = {**cand, **(self.candidate_car_check.summary() if self.candidate_car_check else {})}
            champ = {**champ, **(self.champion_car_check.summary() if self.champion_car_check else {})}

        def cell(value: float | None) -> str:
            return f"{'-' if value is None else f'{value:.4f}':>34}"

        lines = [f"{'':<16}{'champion ' + (self.champion or '-'):>34}{'challenger ' + self.candidate:>34}"]
        lines += [f"{k:<16}{cell(champ.get(k))}{cell(cand.get(k))}" for k in keys]
        lines.append(
            ("PROMOTED" if self.promoted else "REFUSED") + (" (forced)" if self.forced else "") + ": " + self.reason
        )
        return "\n".join(lines)


def _beats(a: EvaluationReport, b: EvaluationReport) -> bool:
    """Strictly better: a tie keeps the champion (a new model must earn its rollout)."""
    return (a.top5, a.top1) > (b.top5, b.top1)


REEXPORT_TOLERANCE: Final = 0.005
"""How far (as a share of the images) a re-export of the champion's own weights may fall behind it in top-5 and in
top-1. Such a version is no new model: it has the same trained network in new files (`carspot models reexport`),
and its int8 files were calibrated again, which moves answers by chance: `20261207T015243Z`, a re-export of
`20261206T170207Z`, scored 0.15 points lower top-5 and 0.10 lower top-1 on 2,039 held-out photos. It must match
the champion, not beat it; its car check is held to the same tolerance as any challenger's."""


def _reexport_of(model_dir: Path | str, candidate: str, champion: str) -> bool:
    """``candidate`` was made from ``champion`` by `carspot models reexport` (its manifest's ``derived_from``) and
    carries the same Keras weights (the manifests' sha256 of them)."""
    manifests = [read_manifest(model_dir, version) for version in (candidate, champion)]
    source = (manifests[0].get("derived_from") or {}).get("version")
    digests = [(manifest.get("tensorflow_weights") or {}).get("sha256") for manifest in manifests]
    return source == champion and digests[0] is not None and digests[0] == digests[1]


def _matches(a: EvaluationReport, b: EvaluationReport, tolerance: float) -> bool:
    return a.top5 >= b.top5 - tolerance and a.top1 >= b.top1 - tolerance


def promote(
    model_dir: Path | str,
    candidate: str,
    evaluate_fn: Callable[[str], EvaluationReport],
    *,
    force: bool = False,
    raise_on_refusal: bool = False,
    car_check_fn: Callable[[str], CarCheckReport | None] | None = None,
    car_check_tolerance: float = 0.01,
) -> PromotionResult:
    """Makes ``candidate`` current if it is strictly better than the current model on ``evaluate_fn``'s data, or
    if it is a re-export of the current model's own weights that matches it within `REEXPORT_TOLERANCE`.

    ``evaluate_fn(version)`` evaluates one version (the caller loads it and runs `evaluate` on the evaluation
    set), so both models see the same images through the same analysis. Top-5 decides, top-1 breaks ties.
    With ``car_check_fn(version)`` (`carspot.classifier.car_check.measure_car_check` on the same images for
    both; None for a model without a car head) a candidate whose car head is worse by more than
    ``car_check_tolerance`` on either side, or missing where the champion has one, is refused however good its
    brands are: the analysis modes rely on that head to find and refute cars.
    ``force`` promotes anyway and says so in ``promotions.log``. With ``raise_on_refusal`` a refusal raises
    `PromotionRefused` (carrying the result) instead of returning it.
    """
    read_manifest(model_dir, candidate, verify=True)
    champion = current_version(model_dir)
    cand_report = evaluate_fn(candidate)
    champ_report = evaluate_fn(champion) if champion is not None and champion != candidate else None
    cand_check = car_check_fn(candidate) if car_check_fn is not None and champion != candidate else None
    compared = champion if champ_report is not None else None  # a champion other than the candidate
    champ_check = car_check_fn(compared) if car_check_fn is not None and compared is not None else None
    car_head_worse: list[str] = []
    if champ_check is not None:
        car_head_worse = (
            ["it gives no car scores"]
            if cand_check is None
            else list(car_check_regression(cand_check, champ_check, tolerance=car_check_tolerance))
        )
    if champion == candidate:
        promoted, reason = False, "the candidate is already current"
    elif champ_report is None:
        promoted, reason = True, "no current model"
    elif car_head_worse:
        promoted, reason = False, "its car head is worse than the champion's: " + "; ".join(car_head_worse)
    elif _beats(cand_report, champ_report):
        promoted, reason = (
            True,
            (
                f"top-5 {cand_report.top5:.4f} vs {champ_report.top5:.4f}, top-1 {cand_report.top1:.4f} vs "
                f"{champ_report.top1:.4f}"
            ),
        )
    elif (
        champion is not None
        and _reexport_of(model_dir, candidate, champion)
        and _matches(cand_report, champ_report, REEXPORT_TOLERANCE)
    ):
        promoted, reason = (
            True,
            (
                f"a re-export of the champion's weights, within {REEXPORT_TOLERANCE:.3f} of it: top-5 "
                f"{cand_report.top5:.4f} vs {champ_report.top5:.4f}, top-1 {cand_report.top1:.4f} vs "
                f"{champ_report.top1:.4f}"
            ),
        )
    else:
        promoted, reason = (
            False,
            (
                f"not better than the champion: top-5 {cand_report.top5:.4f} vs {champ_report.top5:.4f}, "
                f"top-1 {cand_report.top1:.4f} vs {champ_report.top1:.4f}"
            ),
        )
    forced = False
    if not promoted and force and champion != candidate:
        promoted, forced, reason = True, True, "forced: " + reason
    if promoted:
        set_current(model_dir, candidate)
    result = PromotionResult(
        candidate, champion, promoted, forced, reason, cand_report, champ_report, cand_check, champ_check
    )
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "candidate": candidate,
        "champion": champion,
        "promoted": promoted,
        "forced": forced,
        "reason": reason,
        "candidate_metrics": cand_report.summary(),
        "champion_metrics": champ_report.summary() if champ_report else None,
        "candidate_car_check": cand_check.summary() if cand_check else None,
        "champion_car_check": champ_check.summary() if champ_check else None,
    }
    with (Path(model_dir) / "promotions.log").open("a") as log:
        log.write(json.dumps(entry) + "\n")
    if not promoted and raise_on_refusal:
        raise PromotionRefused(reason)
    return result
