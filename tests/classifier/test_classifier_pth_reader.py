"""The legacy .pth reader: reads the real file, a hand-assembled one, and refuses any pickle asking for code."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from carspot.classifier.backbone import source_weights_path
from carspot.classifier.pth_reader import (
    LEGACY_MAGIC,
    PthFormatError,
    UnsafePickleError,
    read_legacy_state_dict,
)

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}


def _header() -> bytes:
    return b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, 1001, SYS_INFO))


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _state_dict_pickle(*, shape: tuple[int, int], stride: tuple[int, int], numel: int, offset: int = 0) -> bytes:
    """``OrderedDict(w=_rebuild_tensor_v2(<storage 0>, offset, shape, stride, False, OrderedDict()))`` as the
    opcodes torch.save writes (protocol 2), assembled by hand so the test needs no PyTorch."""
    return b"".join(
        [
            b"\x80\x02",
            b"ccollections\nOrderedDict\n)R",
            _u("w"),
            b"ctorch._utils\n_rebuild_tensor_v2\n(",
            b"(" + _u("storage") + b"ctorch\nFloatStorage\n" + _u("0") + _u("cpu") + b"K" + bytes([numel]) + b"tQ",
            b"K" + bytes([offset]),
            b"K" + bytes([shape[0]]) + b"K" + bytes([shape[1]]) + b"\x86",
            b"K" + bytes([stride[0]]) + b"K" + bytes([stride[1]]) + b"\x86",
            b"\x89ccollections\nOrderedDict\n)R",
            b"tRs.",
        ]
    )


def _legacy_file(body: bytes, values: np.ndarray) -> bytes:
    return (
        _header()
        + body
        + pickle.dumps(["0"], protocol=2)
        + struct.pack("<q", values.size)
        + values.astype("<f4").tobytes()
    )


def test_reads_a_hand_assembled_legacy_file_including_strides_and_offsets() -> None:
    values = np.arange(8, dtype=np.float32)
    plain = read_legacy_state_dict(_legacy_file(_state_dict_pickle(shape=(2, 3), stride=(3, 1), numel=8), values))
    np.testing.assert_array_equal(plain["w"], values[:6].reshape(2, 3))
    # a transposed view with an offset: element [i, j] = storage[2 + i + 2 j]
    view = read_legacy_state_dict(
        _legacy_file(_state_dict_pickle(shape=(2, 3), stride=(1, 2), numel=8, offset=2), values)
    )
    np.testing.assert_array_equal(view["w"], np.array([[2, 4, 6], [3, 5, 7]], dtype=np.float32))


def test_reads_the_packaged_efficientnet_lite0_weights() -> None:
    state = read_legacy_state_dict(source_weights_path())
    assert len(state) == 296
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024  # 4.69 M
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


def test_reads_only_the_tensors_asked_for_as_the_full_read_gives_them() -> None:
    full = read_legacy_state_dict(source_weights_path())
    head = read_legacy_state_dict(source_weights_path(), only=("_fc.weight", "_fc.bias"))
    assert list(head) == ["_fc.weight", "_fc.bias"]
    for name, value in head.items():
        np.testing.assert_array_equal(value, full[name])
    with pytest.raises(PthFormatError, match="holds no"):
        read_legacy_state_dict(source_weights_path(), only=("_fc.weight", "_head.weight"))


def test_a_file_cut_inside_a_skipped_storage_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth"
    cut.write_bytes(source_weights_path().read_bytes()[:-1000])  # the head's storages come before the end
    with pytest.raises(PthFormatError, match="truncated"):
        read_legacy_state_dict(cut, only=("_conv_stem.weight",))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_state_dict_pickle_that_calls_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + evil + pickle.dumps([], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        read_legacy_state_dict(path)
    assert not marker.exists()


def test_refuses_code_even_in_the_magic_number_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError):
        read_legacy_state_dict(pickle.dumps(_Evil(marker), protocol=2) + _header())
    assert not marker.exists()


def test_refuses_builtins_like_eval() -> None:
    body = b"\x80\x02cbuiltins\neval\n" + _u("1+1") + b"\x85R."
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        read_legacy_state_dict(_header() + body)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04rest", "zip"),
        (pickle.dumps(1234, protocol=2), "magic"),
        (b"", "cannot read"),
    ],
)
def test_rejects_files_that_are_not_legacy_state_dicts(data: bytes, message: str) -> None:
    with pytest.raises(PthFormatError, match=message):
        read_legacy_state_dict(data)


def test_rejects_a_truncated_storage() -> None:
    values = np.arange(8, dtype=np.float32)
    data = _legacy_file(_state_dict_pickle(shape=(2, 3), stride=(3, 1), numel=8), values)
    with pytest.raises(PthFormatError, match="truncated"):
        read_legacy_state_dict(data[:-4])
