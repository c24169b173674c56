"""Errors raised by the classifier package.

One tree, so the pipeline's error policy can catch by meaning rather than by library::

    ClassifierError
     ├── ModelLoadError                    a model cannot be used; fatal at start-up, never retried
     │    ├── ModelNotFoundError           no such version / file missing (also a FileNotFoundError)
     │    ├── ModelIntegrityError          a file's sha256 differs from its manifest
     │    └── ManifestError                a manifest is missing fields or inconsistent
     ├── DatasetError                      training or evaluation data cannot be read (also a ValueError)
     ├── PromotionRefused                  the candidate does not beat the current model (and no force)
     └── InvalidCropError                  one crop is not an HxWx3 uint8 array (also a ValueError)

The legacy ``.pth`` reader has its own small tree (`carspot.classifier.pth_reader.PthError`), because it is about
untrusted files rather than models we built.
"""

from __future__ import annotations

__all__ = [
    "ClassifierError",
    "DatasetError",
    "InvalidCropError",
    "ManifestError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PromotionRefused",
]


class ClassifierError(Exception):
    """Base of every error this package raises on purpose."""


class ModelLoadError(ClassifierError):
    """A model could not be loaded; the worker cannot start (or swap) with it."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model directory, the version or one of its files is missing."""


class ModelIntegrityError(ModelLoadError):
    """A model file on disk is not the one its manifest describes."""


class ManifestError(ModelLoadError):
    """A manifest cannot be parsed or lacks what loading needs."""


class DatasetError(ClassifierError, ValueError):
    """A dataset (folder-per-make or CSV) is empty, malformed or points at missing images."""


class PromotionRefused(ClassifierError):
    """The challenger is not better than the champion on the same evaluation data."""


class InvalidCropError(ClassifierError, ValueError):
    """A crop handed to the classifier is not an HxWx3 uint8 array."""
