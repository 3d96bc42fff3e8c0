"""Read a PyTorch state dict saved in torch's legacy (pre-1.6, non-zip) format with pickle + numpy only.

Layout of such a file: four pickles (magic number, protocol version, system info, the state dict
whose tensors reference storages by persistent id), a pickled list of storage keys, then for each
storage, in that order, an int64 element count followed by the raw little-endian data.
"""
from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype_name: str, key: str, numel: int):
        if dtype_name not in _STORAGE_DTYPES:
            raise ValueError(f"unsupported torch storage type {dtype_name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[dtype_name])
        self.key = key
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        if not self.size:
            return data[self.offset].copy()
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride]
        )
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *args):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(tensor, *args):
    return tensor


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("torch"):
            if name.endswith("Storage"):
                return name
            if name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if name == "_rebuild_parameter":
                return _rebuild_parameter
            raise pickle.UnpicklingError(f"unsupported torch object {module}.{name}")
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")

    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def persistent_load(self, pid):
        kind, dtype_name, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind}")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype_name, key, numel)
        return self.storages[key]


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_legacy_state_dict(path: str | Path) -> "OrderedDict[str, np.ndarray]":
    """Return ``{name: ndarray}`` from a legacy-format ``.pth`` file, without importing torch.

    Only tensors, storages and OrderedDict are accepted: any other pickled class is refused.
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = _SafeUnpickler(f).load()
        if magic != _MAGIC:
            raise ValueError(f"{path}: not a legacy torch file (zip-format .pth files need torch to read)")
        _SafeUnpickler(f).load()  # protocol version
        sys_info = _SafeUnpickler(f).load()
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian torch files are not supported")
        up = _Unpickler(f)
        state = up.load()
        keys = _SafeUnpickler(f).load()
        for key in keys:
            st = up.storages[key]
            (n,) = struct.unpack("<q", f.read(8))
            buf = f.read(n * st.dtype.itemsize)
            if len(buf) != n * st.dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            st.data = np.frombuffer(buf, dtype=st.dtype)
    return OrderedDict((k, v.to_numpy() if isinstance(v, _TensorRef) else v) for k, v in state.items())
