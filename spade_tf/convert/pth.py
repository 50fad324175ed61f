"""Read PyTorch `.pth` state dicts into numpy arrays without PyTorch, and without running code.

`torch.save` files are pickles, and unpickling calls whatever global the file names, so a
downloaded checkpoint can run arbitrary code under `torch.load`. Here a restricted unpickler
resolves only the few names a plain state dict needs (tensor rebuild functions, storage types,
`OrderedDict`), each mapped to our own harmless stand-in; any other name is refused.

Both on-disk formats are read:

* zip (torch >= 1.6): `<prefix>/data.pkl` holds the pickle, whose persistent ids name
  storages stored raw as `<prefix>/data/<key>`; `<prefix>/byteorder` may say 'big'.
* legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): five things back to back:
  magic-number pickle, protocol-version pickle, sys-info pickle, the object pickle, the sorted
  list of storage keys; then, for each key, an int64 element count and the raw storage bytes.

`.npz` files (what `spade convert` and the shared fixtures use) load through the same function.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage type name -> little-endian numpy dtype of one element ("bfloat16" is special:
# numpy has no bfloat16, so its 16-bit patterns are widened to float32 exactly).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}

_MAX_EXPANDED = 2**26  # elements; a real state dict never holds a bigger expanded (stride-0) tensor
_HINT = ("save the weights with `torch.save(model.state_dict(), path)` (a plain dict of tensors), "
         "or convert them to .npz")


# ---- harmless stand-ins for the globals a state dict names -----------------------------------
class _StorageType:
    """Stands for `torch.FloatStorage` & co.: only remembers the element type."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StorageRef:
    """A storage named by a persistent id; its bytes are attached once they have been read."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int) -> None:
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        self.array: np.ndarray | None = None  # 1-D, `numel` elements


class _LazyTensor:
    """What a tensor rebuild returns: a strided view description, materialised later
    (in legacy files the storage bytes come after the pickle)."""

    def __init__(self, storage: object, offset: object, size: object, stride: object) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


class _Marker:
    """Stands for a class that only appears as an argument (`torch.Tensor`, `Parameter`)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch uses this for tensors that carry Python attributes; only plain tensor types pass.
    if not isinstance(new_type, _Marker) or not callable(func) or not isinstance(args, tuple):
        raise pickle.UnpicklingError("_rebuild_from_type_v2 with an unexpected tensor type")
    return func(*args)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _Marker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.parameter.Parameter"),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
    ("torch", "UntypedStorage"): _StorageType("UntypedStorage"),
}
_ALLOWED_GLOBALS.update({("torch", name): _StorageType(name) for name in _STORAGE_DTYPES})


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED_GLOBALS`; storages come back as `_StorageRef` placeholders."""

    def __init__(self, file: io.BytesIO, legacy: bool) -> None:
        super().__init__(file)
        self.legacy = legacy
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds view_metadata.
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise pickle.UnpicklingError(f"unsupported persistent id '{kind}'")
        if len(pid) not in (5, 6):
            raise pickle.UnpicklingError(f"malformed storage id of {len(pid)} fields")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("storage id without a storage type")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage '{key}' has an invalid size {numel!r}")
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            # Pre-2018 files could store views into a larger storage: (view_key, offset, size).
            raise pickle.UnpicklingError("storage views (torch < 0.4 files) are not supported")
        key = str(key)
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, storage_type, numel)
        return ref


# ---- public API ------------------------------------------------------------------------------
def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a state dict from a `.pth`/`.pt` (zip or legacy torch format) or `.npz` file.

    Returns {key: array} in stored order. Arrays keep their stored layout (conv weights OIHW,
    linear weights (out, in)) and dtype (float32, int64 `num_batches_tracked`, ...); bfloat16
    is widened to float32. Raises SpadeError for a missing, corrupt, unsafe or non-state-dict file.
    """
    path = Path(path)
    if not path.is_file():
        raise SpadeError(f"{path}: checkpoint file not found" + (" (it is a directory)" if path.is_dir()
                                                                  else ""))
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                if names and all(n.endswith(".npy") for n in names):
                    return _load_npz(path)
                return _load_zip(path, zf, names)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
            raise SpadeError(f"{path}: corrupt or truncated zip checkpoint ({e}); download or copy it "
                             "again") from None
    if head[:1] == b"\x80":
        return _load_legacy(path)
    if head.startswith(b"\x93NUM"):
        raise SpadeError(f"{path}: a single .npy array, not a state dict; save a dict of arrays with "
                         "np.savez")
    raise SpadeError(f"{path}: not a PyTorch checkpoint (neither zip nor pickle) or an .npz file; "
                     f"{_HINT}")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as e:
        raise SpadeError(f"{path}: .npz holds an array that needs pickle ({e}); only plain numeric "
                         "arrays are accepted") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise SpadeError(f"{path}: corrupt or truncated .npz ({e})") from None


def _load_zip(path: Path, zf: zipfile.ZipFile, names: list[str]) -> dict[str, np.ndarray]:
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    pickles = [n for n in pickles if n.count("/") <= 1]
    if len(pickles) != 1:
        what = "no" if not pickles else f"{len(pickles)}"
        raise SpadeError(f"{path}: a zip file with {what} '<name>/data.pkl' records, so not a torch.save "
                         f"checkpoint; {_HINT}")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise SpadeError(f"{path}: unknown byte order '{byteorder}' in {prefix}byteorder")
    unpickler = _SafeUnpickler(io.BytesIO(zf.read(pickles[0])), legacy=False)
    obj = _unpickle(path, unpickler)
    for ref in unpickler.storages.values():
        record = f"{prefix}data/{ref.key}"
        if record not in names:
            raise SpadeError(f"{path}: storage record '{record}' is missing; the file is incomplete")
        expected = ref.numel * _itemsize(ref)
        if zf.getinfo(record).file_size != expected:  # checked before reading: no zip bombs
            raise SpadeError(f"{path}: storage record '{record}' holds {zf.getinfo(record).file_size} "
                             f"bytes, expected {expected}; the file is corrupt")
        ref.array = _storage_array(path, ref, _read_record(path, zf, zf.getinfo(record)), byteorder)
    return _to_state_dict(path, obj)


def _read_record(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray | bytes:
    """A zip record's bytes in a fresh writable buffer. torch stores records uncompressed, so
    they are read straight into the buffer (one copy) and their CRC is checked here."""
    if info.compress_type != zipfile.ZIP_STORED:
        return zf.read(info)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for '{info.filename}'")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > path.stat().st_size:  # before allocating what the header claims
            raise zipfile.BadZipFile(f"record '{info.filename}' is cut short")
        fh.seek(start)
        buf = np.empty(info.file_size, np.uint8)  # not zero-filled: readinto fills it
        if fh.readinto(memoryview(buf)) != info.file_size:
            raise zipfile.BadZipFile(f"record '{info.filename}' is cut short")
    if zlib.crc32(buf) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file '{info.filename}'")
    return buf


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        return _read_legacy(path, f)


def _read_legacy(path: Path, f: io.BufferedReader) -> dict[str, np.ndarray]:
    try:
        magic = _SafeUnpickler(f, legacy=True).load()
        if magic != _LEGACY_MAGIC:
            raise SpadeError(f"{path}: a pickle, but not a torch.save checkpoint (no torch magic number); "
                             f"{_HINT}")
        protocol = _SafeUnpickler(f, legacy=True).load()
        if protocol != _LEGACY_PROTOCOL:
            raise SpadeError(f"{path}: unsupported legacy torch protocol version {protocol!r}")
        sys_info = _SafeUnpickler(f, legacy=True).load()
    except SpadeError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure here means a bad header
        raise SpadeError(f"{path}: corrupt legacy checkpoint header ({type(e).__name__}: {e})") from None
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    unpickler = _SafeUnpickler(f, legacy=True)
    obj = _unpickle(path, unpickler)
    keys = _unpickle(path, _SafeUnpickler(f, legacy=True), what="storage key list")
    if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
        raise SpadeError(f"{path}: storage key list does not match the tensors; the file is corrupt")
    byteorder = "little" if little else "big"
    file_size = path.stat().st_size
    for key in keys:
        ref = unpickler.storages[str(key)]
        header = f.read(8)
        if len(header) != 8:
            raise SpadeError(f"{path}: truncated: storage '{key}' is missing; copy the file again")
        count = struct.unpack("<q" if little else ">q", header)[0]
        if count != ref.numel:
            raise SpadeError(f"{path}: storage '{key}' has {count} elements, the pickle says {ref.numel}; "
                             "the file is corrupt")
        if f.tell() + count * _itemsize(ref) > file_size:  # before allocating what the header claims
            raise SpadeError(f"{path}: truncated: storage '{key}' is cut short; copy the file again")
        raw = np.empty(count * _itemsize(ref), np.uint8)
        if f.readinto(memoryview(raw)) != raw.size:
            raise SpadeError(f"{path}: truncated: storage '{key}' is cut short; copy the file again")
        ref.array = _storage_array(path, ref, raw, byteorder)
    return _to_state_dict(path, obj)


def _unpickle(path: Path, unpickler: _SafeUnpickler, what: str = "pickle"):
    try:
        return unpickler.load()
    except _RefusedGlobal as e:
        raise SpadeError(f"{path}: refuses to load global '{e.name}': only plain tensors and dicts are "
                         "allowed, because unpickling other names can run arbitrary code. This file looks "
                         f"like a pickled model or training state, not a state dict; {_HINT}") from None
    except RecursionError:
        raise SpadeError(f"{path}: {what} is nested too deeply; the file is corrupt") from None
    except Exception as e:  # noqa: BLE001 - truncated/garbled pickles raise many types
        raise SpadeError(f"{path}: corrupt or truncated {what} ({type(e).__name__}: {e}); copy the file "
                         "again") from None


def _itemsize(ref: _StorageRef) -> int:
    dtype = ref.storage_type.dtype
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _storage_array(path: Path, ref: _StorageRef, raw: np.ndarray | bytes, byteorder: str) -> np.ndarray:
    dtype = ref.storage_type.dtype
    bfloat16 = dtype == "bfloat16"
    np_dtype = np.dtype("<u2" if bfloat16 else dtype)
    if byteorder == "big":
        np_dtype = np_dtype.newbyteorder(">")
    if len(raw) != ref.numel * np_dtype.itemsize:
        raise SpadeError(f"{path}: storage '{ref.key}' has {len(raw)} bytes, expected "
                         f"{ref.numel * np_dtype.itemsize}; the file is truncated or corrupt")
    array = raw.view(np_dtype) if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=np_dtype)
    if bfloat16:  # bfloat16 is the top half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np_dtype.newbyteorder("="), copy=False)


def _materialise(path: Path, key: str, tensor: _LazyTensor, sole_user: bool) -> np.ndarray:
    ref, offset, size, stride = tensor.storage, tensor.offset, tensor.size, tensor.stride

    def bad(why: str) -> SpadeError:
        return SpadeError(f"{path}: tensor '{key}' {why}; the file is corrupt")

    if not isinstance(ref, _StorageRef) or ref.array is None:
        raise bad("has no storage")
    if not (isinstance(offset, int) and isinstance(size, tuple | list) and isinstance(stride, tuple | list)):
        raise bad("has a malformed layout")
    size, stride = tuple(size), tuple(stride)
    valid = all(isinstance(v, int) and v >= 0 for v in size + stride)
    if len(size) != len(stride) or not valid or offset < 0:
        raise bad(f"has an invalid layout (size {size}, stride {stride}, offset {offset})")
    storage = ref.array
    try:
        if 0 in size:
            return np.zeros(size, dtype=storage.dtype)
        return _strided_copy(storage, offset, size, stride, sole_user, bad)
    except (MemoryError, ValueError, OverflowError):  # e.g. a stride-0 view claiming a huge size
        raise bad(f"is too large to hold in memory (size {size})") from None


def _strided_copy(storage: np.ndarray, offset: int, size: tuple, stride: tuple, sole_user: bool,
                  bad) -> np.ndarray:
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise bad(f"reaches element {last} of a storage of {storage.size}")
    numel = math.prod(size)
    if numel > max(storage.size, _MAX_EXPANDED):  # only stride-0 views can be larger than storage
        raise bad(f"is a broadcast view of {numel} elements over a storage of {storage.size}")
    itemsize = storage.dtype.itemsize
    whole = offset == 0 and storage.size == numel and stride == _contiguous_strides(size)
    if whole and sole_user and storage.flags.writeable:
        return storage.reshape(size)  # the usual case: the storage buffer is this tensor's own
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view, copy=True, order="C")  # own, contiguous memory; never aliases the file buffer


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _to_state_dict(path: Path, obj) -> dict[str, np.ndarray]:
    if isinstance(obj, _LazyTensor):
        raise SpadeError(f"{path}: holds a single tensor, not a state dict; {_HINT}")
    if not isinstance(obj, dict):
        raise SpadeError(f"{path}: holds a {type(obj).__name__}, not a state dict; {_HINT}")
    users = collections.Counter(id(v.storage) for v in obj.values() if isinstance(v, _LazyTensor))
    result: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise SpadeError(f"{path}: state-dict key {key!r} is not a string; {_HINT}")
        if not isinstance(value, _LazyTensor):
            nested = ""
            if isinstance(value, dict):
                nested = (f" (it is a dict: if the weights are inside, save `checkpoint['{key}']` "
                          "on its own)")
            raise SpadeError(f"{path}: entry '{key}' holds {type(value).__name__}, not a tensor{nested}; "
                             f"this is not a plain state dict; {_HINT}")
        result[key] = _materialise(path, key, value, sole_user=users[id(value.storage)] == 1)
    return result
