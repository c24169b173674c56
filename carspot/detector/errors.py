"""Errors raised by the detector package.

One tree, so callers (the pipeline's error policy) can catch by meaning rather than by library::

    DetectorError
     ├── ModelLoadError                    a model cannot be used; fatal at start-up, never retried
     │    ├── ModelNotFoundError           weights or class-names file missing (also a FileNotFoundError)
     │    ├── ModelIntegrityError          the weights' sha256 differs from the expected one
     │    └── ModelFormatError             the graph's inputs or outputs are not the layout we decode
     └── InvalidImageError                 one image is not HxWx3 uint8; dead-letter it (also a ValueError)
"""

from __future__ import annotations

__all__ = [
    "DetectorError",
    "InvalidImageError",
    "ModelFormatError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
]


class DetectorError(Exception):
    """Base of every error this package raises on purpose."""


class ModelLoadError(DetectorError):
    """A model could not be loaded; the worker cannot start with it."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model file is missing (a wrong path or an unmounted shared folder)."""


class ModelIntegrityError(ModelLoadError):
    """The weights on disk are not the ones the decoding was written and tested for."""


class ModelFormatError(ModelLoadError):
    """The network's outputs do not have the layout the decoder expects."""


class InvalidImageError(DetectorError, ValueError):
    """The image handed to a detector is not an HxWx3 uint8 array."""
