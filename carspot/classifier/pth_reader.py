"""Reads a PyTorch *legacy* (non-zip) ``.pth`` state dict into numpy arrays, without PyTorch and without
running code from the pickle.

Why not ``pickle.load``: a pickle can name any importable callable (``os.system``) and call it while loading,
so a ``.pth`` from anywhere is a program. This reader's unpickler resolves only the names a state dict of
tensors needs — the tensor-rebuild functions, the typed storage classes and ``OrderedDict`` — and raises
`UnsafePickleError` for every other global, before anything is called. The storage and rebuild names map to our
own small functions; nothing from ``torch`` is imported.

The legacy layout (``torch.save(..., _use_new_zipfile_serialization=False)``), read in order:

1. three small pickles: the magic number, the protocol version, the system info (byte order, type sizes);
2. the pickled object, whose tensors are ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` and whose
   storages are persistent ids ``("storage", StorageType, key, location, numel[, view_metadata])``;
3. a pickled list of storage keys;
4. for each key in that order: the storage's element count as little-endian int64, then its raw bytes.

Errors::

    PthError                     the file cannot be read as a legacy state dict (a ValueError)
     ├── UnsafePickleError       the pickle asks for a global outside the allow-list: refused, nothing called
     └── PthFormatError          truncated, wrong magic number, zip format, unknown storage, bad shapes
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np

__all__ = ["LEGACY_MAGIC", "PthError", "PthFormatError", "UnsafePickleError", "read_legacy_state_dict"]

LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
"""PyTorch's magic number for the legacy serialization format."""

_STORAGE_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthError(ValueError):
    """The file is not a legacy PyTorch state dict this reader can load."""


class UnsafePickleError(PthError):
    """The pickle names a global that a tensor state dict never needs; nothing was executed."""


class PthFormatError(PthError):
    """The file's structure is not the legacy layout (truncated, zip format, unknown storage type...)."""


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its element dtype matters."""

    name: str
    dtype: np.dtype[Any]


@dataclass
class _Storage:
    """A storage announced by a persistent id; its bytes arrive after the pickle."""

    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A tensor view of a storage, materialised once the storage bytes are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise PthFormatError("a tensor points at a storage whose bytes were never read")
        if not self.size:
            return np.array(data[self.offset], dtype=data.dtype)
        extent = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        if min(self.size) > 0 and (self.offset < 0 or extent > data.size):
            raise PthFormatError(f"tensor of size {self.size} runs past its storage of {data.size} elements")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise PthFormatError("a tensor's storage is not a persistent storage reference")
    return _TensorRef(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


_ALLOWED: Final[dict[tuple[str, str], Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle asks for {module}.{name}, which a tensor state dict never needs"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise PthFormatError("a persistent id outside the state dict pickle")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise PthFormatError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise PthFormatError("storage views (view_metadata) are not supported")
        if not isinstance(storage_type, _StorageType):
            raise PthFormatError(f"unknown storage type {storage_type!r:.80}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, int(numel))
        return self._storages[key]


def _load_small(f: BinaryIO) -> Any:
    return _RestrictedUnpickler(f).load()


def _collect(obj: Any, prefix: str, out: dict[str, _TensorRef | np.ndarray]) -> None:
    """The state dict's leaves by dotted name: tensor references (not yet read) and scalars."""
    if isinstance(obj, _TensorRef):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _collect(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(obj, (int, float)) and prefix:
        out[prefix] = np.asarray(obj)
    else:
        raise PthFormatError(f"unexpected {type(obj).__name__} at {prefix or 'the top level'}")


def read_legacy_state_dict(source: Path | str | bytes, *, only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The state dict's tensors as numpy arrays keyed by their dotted names, in file order; with ``only``, just
    those, and from a path only their storages' bytes are read (the others are skipped: the ImageNet head is
    5 of the EfficientNet-Lite0 file's 19 MB).

    Nested dicts (``{"state_dict": {...}}``) are flattened with dots. Raises `UnsafePickleError` if any of the
    file's pickles names a global outside the allow-list, `PthFormatError` for anything else unexpected,
    including a wanted key the file does not hold.
    """
    if isinstance(source, bytes):
        return _read(io.BytesIO(source), len(source), only)
    with open(source, "rb") as f:
        return _read(f, os.fstat(f.fileno()).st_size, only)


def _read(f: BinaryIO, size: int, only: Collection[str] | None) -> dict[str, np.ndarray]:
    if f.read(2) == b"PK":
        raise PthFormatError("this is the zip serialization (torch >= 1.6 default), not the legacy format")
    f.seek(0)
    try:
        magic = _load_small(f)
        if magic != LEGACY_MAGIC:
            raise PthFormatError(f"wrong magic number {magic!r:.40}: not a legacy .pth")
        protocol = _load_small(f)
        if protocol != 1001:
            raise PthFormatError(f"unsupported legacy protocol version {protocol!r:.40}")
        sys_info = _load_small(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise PthFormatError("big-endian files are not supported")
        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(f, storages).load()
        keys = _load_small(f)
        if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
            raise PthFormatError("the storage key list does not match the storages the state dict uses")
        leaves: dict[str, _TensorRef | np.ndarray] = {}
        _collect(result, "", leaves)
        if only is not None:
            if set(only) - set(leaves):
                raise PthFormatError(f"the file holds no {sorted(set(only) - set(leaves))}")
            leaves = {name: leaf for name, leaf in leaves.items() if name in only}
        wanted = {id(leaf.storage) for leaf in leaves.values() if isinstance(leaf, _TensorRef)}
        for key in map(str, keys):
            storage = storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise PthFormatError(f"truncated before storage {key}")
            (count,) = struct.unpack("<q", header)
            if count != storage.numel:
                raise PthFormatError(f"storage {key}: {count} elements on disk, {storage.numel} announced")
            nbytes = count * storage.dtype.itemsize
            if id(storage) not in wanted:
                if f.seek(nbytes, io.SEEK_CUR) > size:
                    raise PthFormatError(f"truncated inside storage {key}")
                continue
            blob = f.read(nbytes)
            if len(blob) != nbytes:
                raise PthFormatError(f"truncated inside storage {key}")
            storage.data = np.frombuffer(blob, dtype=storage.dtype)
    except (pickle.UnpicklingError, EOFError, struct.error, TypeError, AttributeError, IndexError) as exc:
        raise PthFormatError(f"cannot read the legacy .pth: {exc}") from exc
    out = {name: leaf.materialise() if isinstance(leaf, _TensorRef) else leaf for name, leaf in leaves.items()}
    if not out:
        raise PthFormatError("the file holds no tensors")
    return out
