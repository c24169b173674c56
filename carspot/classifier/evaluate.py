"""``carspot evaluate``: top-1, top-5, macro precision/recall/F1 (the paper's metrics), a per-make table,
expected calibration error and a confusion-matrix PNG, for any ``predict_top_k`` callable.

The model is injected as a callable (image -> ranked ``(make, score)`` pairs), so the CLI can pass the worker's
default analysis (whole photos with background, not only tight crops) and tests can pass a lambda.

Definitions (fixed, so a hand count reproduces them):

- top-k: the true make is among the first k predicted makes;
- per make m (over the makes present in the ground truth): precision = #(top-1 = m and true = m) / #(top-1 = m),
  0 when m is never predicted; recall = #(top-1 = m and true = m) / #(true = m); F1 = 2PR / (P + R), 0 if P+R=0;
  macro = the unweighted mean over those makes. A top-1 make absent from the ground truth still costs recall.
- ECE: the top-1 score's 10 equal-width bins over [0, 1] (a score of exactly 1 goes to the last bin);
  sum over bins of (bin size / n) x |accuracy - mean score|. An image with no prediction counts as wrong at score 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from carspot.classifier.data import Sample, load_image, load_samples

__all__ = [
    "ECE_BINS",
    "EvaluationReport",
    "MakeStats",
    "evaluate",
    "evaluate_by",
    "evaluate_path",
    "report_from_predictions",
]

ECE_BINS: Final = 10
TopK = list[tuple[str, float]]


@dataclass(frozen=True)
class MakeStats:
    make: str
    support: int
    predicted: int
    correct: int
    precision: float
    recall: float
    f1: float
    top5: float


@dataclass(frozen=True)
class EvaluationReport:
    n: int
    top1: float
    top5: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    ece: float
    per_make: tuple[MakeStats, ...]
    confusion_labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    """Rows = true make (ground-truth makes), columns = top-1 make (``confusion_labels``, then any other)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_make"] = {s.make: {k: v for k, v in asdict(s).items() if k != "make"} for s in self.per_make}
        return out

    def summary(self) -> dict[str, float | int]:
        """The headline numbers only (what a manifest keeps)."""
        keys = ("n", "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "ece")
        return {k: getattr(self, k) for k in keys}

    def to_json(self) -> str:
        """One line of JSON with at least ``n, top1, top5, macro_precision, macro_recall, macro_f1, ece,
        per_make``."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def table(self) -> str:
        """A human-readable report: the headline numbers, then one line per make."""
        lines = [
            f"n={self.n}  top-1 {self.top1:.1%}  top-5 {self.top5:.1%}  macro P {self.macro_precision:.1%}  "
            f"R {self.macro_recall:.1%}  F1 {self.macro_f1:.1%}  ECE {self.ece:.3f}",
            f"{'make':<16}{'n':>6}{'P':>8}{'R':>8}{'F1':>8}{'top-5':>8}",
        ]
        for s in self.per_make:
            lines.append(f"{s.make:<16}{s.support:>6}{s.precision:>8.1%}{s.recall:>8.1%}{s.f1:>8.1%}{s.top5:>8.1%}")
        return "\n".join(lines)

    def save_confusion_png(self, path: Path | str) -> Path:
        """The confusion matrix (row-normalised) as a PNG, drawn with matplotlib's non-GUI backend."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        counts = np.asarray(self.confusion, dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        n_true = len(self.per_make)
        cols = [*self.confusion_labels, "other"][: counts.shape[1]]
        size = max(6.0, 0.22 * max(n_true, len(cols)) + 2)
        fig, ax = plt.subplots(figsize=(size, size * n_true / max(len(cols), 1) + 1))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
        ax.set_yticks(range(n_true), [s.make for s in self.per_make], fontsize=6)
        ax.set_xlabel("predicted (top-1)")
        ax.set_ylabel("true make")
        ax.set_title(f"top-1 {self.top1:.1%}  top-5 {self.top5:.1%}  n={self.n}")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


def report_from_predictions(truth: Sequence[str], predictions: Sequence[TopK]) -> EvaluationReport:
    """The report for ranked predictions (best first) against the true makes."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} labels but {len(predictions)} predictions")
    n = len(truth)
    if n == 0:
        raise ValueError("nothing to evaluate")
    makes = sorted(set(truth))
    top1_pred = [p[0][0] if p else None for p in predictions]
    conf = np.array([float(p[0][1]) if p else 0.0 for p in predictions])
    hit1 = np.array([t == p for t, p in zip(truth, top1_pred, strict=True)])
    hit5 = np.array([t in [m for m, _ in p[:5]] for t, p in zip(truth, predictions, strict=True)])

    stats = []
    for m in makes:
        support = sum(t == m for t in truth)
        predicted = sum(p == m for p in top1_pred)
        correct = sum(t == m and p == m for t, p in zip(truth, top1_pred, strict=True))
        precision = correct / predicted if predicted else 0.0
        recall = correct / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        top5 = float(np.mean([h for t, h in zip(truth, hit5, strict=True) if t == m]))
        stats.append(MakeStats(m, support, predicted, correct, precision, recall, f1, top5))

    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        sel = bins == b
        if sel.any():
            ece += sel.sum() / n * abs(hit1[sel].mean() - conf[sel].mean())

    extra = sorted({p for p in top1_pred if p is not None and p not in set(makes)})
    columns = [*makes, *extra]
    col_index = {m: i for i, m in enumerate(columns)}
    matrix = np.zeros((len(makes), len(columns) + 1), dtype=int)
    row_index = {m: i for i, m in enumerate(makes)}
    for t, p in zip(truth, top1_pred, strict=True):
        matrix[row_index[t], col_index[p] if p is not None else len(columns)] += 1
    if not matrix[:, -1].any():
        matrix = matrix[:, :-1]

    return EvaluationReport(
        n=n,
        top1=float(hit1.mean()),
        top5=float(hit5.mean()),
        macro_precision=float(np.mean([s.precision for s in stats])),
        macro_recall=float(np.mean([s.recall for s in stats])),
        macro_f1=float(np.mean([s.f1 for s in stats])),
        ece=float(ece),
        per_make=tuple(stats),
        confusion_labels=tuple(columns),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )


def evaluate(
    samples: Iterable[Sample],
    predict_top_k: Callable[[np.ndarray], TopK],
    *,
    confusion_png: Path | str | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """Runs ``predict_top_k`` on each sample's image (HxWx3 RGB uint8) and scores the ranked makes."""
    samples = list(samples)
    iterator: Iterable[Sample] = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="evaluate", unit="img")
    predictions = [list(predict_top_k(load_image(s.path))) for s in iterator]
    report = report_from_predictions([s.make for s in samples], predictions)
    if confusion_png is not None:
        report.save_confusion_png(confusion_png)
    return report


def evaluate_by(
    samples: Iterable[Sample],
    predict_top_k: Callable[[np.ndarray], TopK],
    *,
    keys: Callable[[Sample], Iterable[str]],
    progress: bool = False,
) -> tuple[EvaluationReport, dict[str, EvaluationReport]]:
    """`evaluate` once over all samples, and the same predictions scored apart for each of a sample's ``keys``
    (its dataset, its source): one pass gives the side-by-side figures of several validation sets."""
    samples = list(samples)
    iterator: Iterable[Sample] = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="evaluate", unit="img")
    predictions = [list(predict_top_k(load_image(s.path))) for s in iterator]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        for name in dict.fromkeys(keys(s)):
            groups.setdefault(name, []).append(i)
    apart = {
        name: report_from_predictions([samples[i].make for i in idx], [predictions[i] for i in idx])
        for name, idx in groups.items()
    }
    return report_from_predictions([s.make for s in samples], predictions), apart


def evaluate_path(
    data: Path | str,
    predict_top_k: Callable[[np.ndarray], TopK],
    *,
    confusion_png: Path | str | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """`evaluate` on a folder-per-make directory or a CSV with ``path, make`` columns."""
    return evaluate(load_samples(data), predict_top_k, confusion_png=confusion_png, progress=progress)
