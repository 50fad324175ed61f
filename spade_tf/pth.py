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

What no file can do to the reader (each refusal is a SpadeError naming the file and the reason):

* Change it. Every load makes its own stand-ins for the allowed globals; they, and every object
  the reader hands to the pickle (storage references, tensor descriptions), refuse BUILD,
  SETITEM and attribute assignment. Nothing at module level is reachable from a pickle.
* Make it allocate without limit. One byte budget per file (`max_bytes`, by default 4x the
  file's size + 256 MiB) covers everything the reader allocates: the pickle (checked opcode by
  opcode with `pickletools` before the C unpickler sees it: counted lengths within the data, memo
  indices in sequence, containers at most 100 deep, no INST/OBJ/NEWOBJ/EXT/out-of-band buffers),
  each storage once, byte-order and bfloat16 conversions, and every tensor that is not simply its
  storage at its full size (so stride-0 views that expand a storage count what they expand to).
  The whole plan is charged before any storage byte is read.
* Be inflated. Compressed or encrypted zip records are refused (torch never writes them); a
  stored record must lie inside the file under its own local header.
* Pass for a state dict. The top object must be a non-empty dict of string keys to tensors.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import struct
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage type name -> little-endian numpy dtype of one element ("bfloat16" is special:
# numpy has no bfloat16, so its 16-bit patterns are widened to float32 exactly).
_STORAGE_DTYPES = types.MappingProxyType({
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
})

BUDGET_FLOOR = 256 * 2**20  # bytes every file may use, whatever its size
BUDGET_PER_FILE_BYTE = 4  # plus this many bytes per byte of the file
_PICKLE_OP_BYTES = 128  # charged per pickle opcode: the object, stack slot and memo entry it may make
_MAX_NESTING = 100  # containers in a state dict nest about 6 deep; deep nesting can crash CPython
_MAX_KEY_CHARS = 1024
_HINT = ("save the weights with `torch.save(model.state_dict(), path)` (a plain dict of tensors), "
         "or convert them to .npz")

# Opcodes a pickled state dict may use (protocols 0-5). Refused: INST/OBJ/NEWOBJ(_EX) (instantiate a
# class), EXT1/2/4 (copyreg registry), BYTEARRAY8/NEXT_BUFFER/READONLY_BUFFER (out-of-band data).
_ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET
    GLOBAL STACK_GLOBAL REDUCE BUILD PERSID BINPERSID
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
""".split())
_MUTATING_OPCODES = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


class _Refused(pickle.UnpicklingError):
    """The file asks the reader for something a state dict never needs; the message says what."""


class _RefusedGlobal(_Refused):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# ---- harmless stand-ins for the globals a state dict names -----------------------------------
class _StandIn:
    """Base of every object the reader hands to a pickle: it cannot be changed once made, so a
    BUILD, SETITEM or attribute assignment on it is refused instead of altering the reader."""

    __slots__ = ("_label",)

    def __init__(self, label: str) -> None:
        object.__setattr__(self, "_label", label)

    def _freeze(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setstate__(self, state) -> None:  # the BUILD opcode
        raise _Refused(f"the pickle changes {self._label} (BUILD)")

    def __setattr__(self, name: str, value) -> None:
        raise _Refused(f"the pickle sets attribute '{name}' of {self._label}")

    def __delattr__(self, name: str) -> None:
        raise _Refused(f"the pickle deletes attribute '{name}' of {self._label}")

    def __setitem__(self, key, value) -> None:  # SETITEM(S)
        raise _Refused(f"the pickle sets an item of {self._label} (SETITEM)")

    def __delitem__(self, key) -> None:
        raise _Refused(f"the pickle deletes an item of {self._label}")

    def __reduce__(self):
        raise TypeError(f"{self._label} cannot be pickled")

    def __repr__(self) -> str:
        return self._label


class _Function(_StandIn):
    """Stands for an allowed function (tensor rebuild, `OrderedDict`): calls our own code."""

    __slots__ = ("_call",)

    def __init__(self, label: str, call) -> None:
        super().__init__(f"allowed global '{label}'")
        self._freeze(_call=call)

    def __call__(self, *args):
        return self._call(*args)


class _StorageType(_StandIn):
    """Stands for `torch.FloatStorage` & co.: only remembers the element type."""

    __slots__ = ("name", "dtype")

    def __init__(self, module: str, name: str, storage: str) -> None:
        super().__init__(f"allowed global '{module}.{name}'")
        self._freeze(name=storage, dtype=_STORAGE_DTYPES[storage])


class _Marker(_StandIn):
    """Stands for a class that only appears as an argument (`torch.Tensor`, `Parameter`)."""

    __slots__ = ()

    def __init__(self, name: str) -> None:
        super().__init__(f"allowed global '{name}'")


class _StorageRef(_StandIn):
    """A storage named by a persistent id; its bytes are read later, into the load's own table."""

    __slots__ = ("key", "storage_type", "numel")

    def __init__(self, key: str, storage_type: _StorageType, numel: int) -> None:
        super().__init__(f"storage '{key}'")
        self._freeze(key=key, storage_type=storage_type, numel=numel)


class _LazyTensor(_StandIn):
    """What a tensor rebuild returns: a strided view description, materialised later
    (in legacy files the storage bytes come after the pickle)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: object, offset: object, size: object, stride: object) -> None:
        super().__init__("a tensor")
        self._freeze(storage=storage, offset=offset, size=size, stride=stride)


def _itemsize(storage_type: _StorageType) -> int:
    return 2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize


def _out_itemsize(storage_type: _StorageType) -> int:
    return 4 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize


class _Budget:
    """The bytes one file may make the reader allocate, charged before each allocation."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit, self.used = path, limit, 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise SpadeError(
                f"{self.path}: exceeds the reader's byte budget of {self.limit:,} bytes at {what} "
                f"({nbytes:,} bytes, {self.used:,} in all). A torch.save checkpoint stays well within "
                f"{BUDGET_PER_FILE_BYTE}x its file size + {BUDGET_FLOOR // 2**20} MiB, so the file is "
                "corrupt or crafted; if it is genuine, pass a larger max_bytes to load_state_dict")


class _Load:
    """Everything one load owns: fresh stand-ins for the allowed globals, the storages the pickle
    names, their bytes, and the byte budget. Nothing here outlives the load."""

    def __init__(self, path: Path, budget: _Budget, byteorder: str = "little") -> None:
        self.path, self.budget, self.byteorder = path, budget, byteorder
        self.storages: dict[str, _StorageRef] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.tensor_types = {
            ("torch", "Tensor"): _Marker("torch.Tensor"),
            ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.parameter.Parameter"),
        }
        rebuilders = {
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
        }
        self.rebuilders = {key: _Function(".".join(key), call) for key, call in rebuilders.items()}
        self.globals: dict[tuple[str, str], _StandIn] = {
            **self.rebuilders, **self.tensor_types,
            ("torch._tensor", "_rebuild_from_type_v2"): _Function("torch._tensor._rebuild_from_type_v2",
                                                                  self._rebuild_from_type_v2),
            ("collections", "OrderedDict"): _Function("collections.OrderedDict", collections.OrderedDict),
            ("torch.storage", "UntypedStorage"): _StorageType("torch.storage", "UntypedStorage",
                                                              "UntypedStorage"),
        }
        self.globals.update({("torch", name): _StorageType("torch", name, name) for name in _STORAGE_DTYPES})

    # -- the allowed functions: each only describes, nothing is read or allocated here --
    @staticmethod
    def _rebuild_tensor(storage, storage_offset, size, stride):
        return _LazyTensor(storage, storage_offset, size, stride)

    @staticmethod
    def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return _LazyTensor(storage, storage_offset, size, stride)

    @staticmethod
    def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
        return data

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        # torch uses this for tensors that carry Python attributes; only plain tensor types pass.
        if (not any(func is f for f in self.rebuilders.values())
                or not any(new_type is t for t in self.tensor_types.values()) or not isinstance(args, tuple)):
            raise _Refused("_rebuild_from_type_v2 is called with something other than a tensor rebuild")
        return func(*args)

    # -- unpickling --
    def persistent_load(self, pid) -> _StorageRef:
        # zip: ('storage', type, key, location, numel); legacy adds view_metadata.
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid and isinstance(pid[0], str) else \
                type(pid).__name__
            raise _Refused(f"unsupported persistent id '{kind[:100]}'")
        if len(pid) not in (5, 6):
            raise _Refused(f"malformed storage id of {len(pid)} fields")
        storage_type, key, _location, numel = pid[1:5]
        if not any(storage_type is t for t in self.globals.values() if isinstance(t, _StorageType)):
            raise _Refused("a storage id without a storage type")
        if not isinstance(key, str) or len(key) > _MAX_KEY_CHARS:
            raise _Refused("a storage id whose key is not a short string")
        if type(numel) is not int or numel < 0:
            raise _Refused(f"storage '{key}' has an invalid size {numel!r}")
        if len(pid) == 6 and pid[5] is not None:
            # Pre-2018 files could store views into a larger storage: (view_key, offset, size).
            raise _Refused("storage views (torch < 0.4 files) are not supported")
        ref = self.storages.get(key)
        if ref is None:
            self.budget.charge(self._storage_bytes(storage_type, numel),
                               f"storage '{key}' ({numel:,} elements)")
            ref = self.storages[key] = _StorageRef(key, storage_type, numel)
        elif ref.storage_type is not storage_type or ref.numel != numel:
            raise _Refused(f"storage '{key}' is named twice with different types or sizes")
        return ref

    def _storage_bytes(self, storage_type: _StorageType, numel: int) -> int:
        """Raw bytes, plus the converted copy for bfloat16 (float32) and for big-endian data."""
        raw = numel * _itemsize(storage_type)
        if storage_type.dtype == "bfloat16":
            return raw + numel * 4
        return raw * 2 if self.byteorder == "big" and _itemsize(storage_type) > 1 else raw

    def unpickle(self, data: bytes, what: str, scanned: bool = False):
        """Check `data` opcode by opcode (unless `scanned`), then unpickle it with this load's stand-ins."""
        try:
            if not scanned:
                _scan_pickle(io.BytesIO(data), self.budget, len(data), what)
            return _SafeUnpickler(io.BytesIO(data), self).load()
        except Exception as e:  # noqa: BLE001 - truncated/garbled pickles raise many types
            raise self._error(e, what) from None

    def unpickle_from(self, f, end: int, what: str):
        """The pickle that starts at f's position (legacy files: pickles back to back)."""
        start = f.tell()
        try:
            _scan_pickle(_Window(f, end), self.budget, None, what)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, what) from None
        stop = f.tell()
        f.seek(start)
        self.budget.charge(stop - start, what)  # the scan charged its opcodes; this is the copy
        return self.unpickle(f.read(stop - start), what, scanned=True)

    def _error(self, e: Exception, what: str) -> Exception:
        if isinstance(e, SpadeError | MemoryError):
            return e
        if isinstance(e, _RefusedGlobal):
            return SpadeError(f"{self.path}: refuses to load global '{e.name}': only plain tensors and dicts "
                              "are allowed, because unpickling other names can run arbitrary code. This "
                              "file looks like a pickled model or training state, not a state dict; "
                              f"{_HINT}")
        if isinstance(e, _Refused):
            return SpadeError(f"{self.path}: refused: {e} in its {what}, which no torch.save state dict "
                              f"does; the file is crafted or corrupt; {_HINT}")
        if isinstance(e, RecursionError):
            return SpadeError(f"{self.path}: {what} is nested too deeply; the file is corrupt")
        return SpadeError(f"{self.path}: corrupt or truncated {what} ({type(e).__name__}: "
                          f"{str(e)[:200]}); copy the file again")


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the load's own stand-ins; storages come back as `_StorageRef` placeholders."""

    def __init__(self, file: io.BytesIO, load: _Load) -> None:
        super().__init__(file)
        self._load = load

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        found = self._load.globals.get((module, name))
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}"[:200])
        return found

    def persistent_load(self, pid):
        return self._load.persistent_load(pid)


class _Window:
    """f from its position up to `end`, for pickletools: no read may ask for more than is left
    (a BufferedReader would allocate whatever size a pickle claims before reading)."""

    def __init__(self, f, end: int) -> None:
        self._f, self._end = f, end

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._f.tell()
        if n is None or n < 0 or n > left:
            raise ValueError(f"the pickle needs {n} more bytes, the file has {left} left")
        return self._f.read(n)

    def readline(self) -> bytes:
        return self._f.readline(max(0, min(self._end - self._f.tell(), 1 << 16)))


def _scan_pickle(stream, budget: _Budget, size: int | None, what: str) -> None:
    """Walk the opcodes without building anything: only allowed opcodes, memo indices in sequence
    (the C unpickler sizes its memo by the largest index), nesting at most _MAX_NESTING (deeper
    structures can overflow CPython's C stack when hashed or compared), and the objects the
    unpickler will make charged to the budget. pickletools reads every counted length from the
    stream, so a length the data does not hold fails here, before the C unpickler allocates it."""
    stack: list[int] = []  # nesting depth of each stack item
    marks: list[int] = []
    memo: dict[int, int] = {}
    ops = 0
    mark = pickletools.markobject

    def corrupt(why: str) -> Exception:
        return ValueError(f"{why} at opcode {ops}")

    for opcode, arg, _pos in pickletools.genops(stream):
        ops += 1
        if not ops & 4095:
            budget.charge(4096 * _PICKLE_OP_BYTES, what)
        name = opcode.name
        if name not in _ALLOWED_OPCODES:
            raise _Refused(f"pickle opcode {name}")
        if name == "MARK":
            marks.append(len(stack))
            continue
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(memo) if name == "MEMOIZE" else arg
            if index > len(memo):
                raise _Refused(f"memo index {index} out of sequence ({len(memo)} entries so far)")
            if not stack:
                raise corrupt("memo of an empty stack")
            memo[index] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise corrupt(f"memo entry {arg} read before it is written")
            stack.append(memo[arg])
            continue
        if name == "POP" and marks and len(stack) == marks[-1]:
            marks.pop()  # POP right after MARK discards the mark
            continue
        before, after = opcode.stack_before, opcode.stack_after
        items: list[int] = []
        below = len(before)
        if mark in before:
            if not marks or marks[-1] > len(stack):
                raise corrupt("no mark to pop to")
            start = marks.pop()
            items = stack[start:]
            del stack[start:]
            below = before.index(mark)
        if len(stack) < below:
            raise corrupt("stack underflow")
        consumed = stack[len(stack) - below:] + items
        del stack[len(stack) - below:]
        if name == "DUP":
            stack.extend(consumed * 2)
            continue
        if name in _MUTATING_OPCODES:
            depth = max([consumed[0]] + [1 + d for d in consumed[1:]])
        else:
            depth = 1 + max(consumed, default=-1)
        if depth > _MAX_NESTING:
            raise _Refused(f"containers nested more than {_MAX_NESTING} deep")
        stack.extend([depth] * len(after))
    budget.charge((ops & 4095) * _PICKLE_OP_BYTES + (size or 0), what)


# ---- public API ------------------------------------------------------------------------------
def default_budget(file_size: int) -> int:
    """The byte budget a file of `file_size` bytes gets unless `max_bytes` is given."""
    return BUDGET_FLOOR + BUDGET_PER_FILE_BYTE * file_size


def load_state_dict(path: str | Path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read a state dict from a `.pth`/`.pt` (zip or legacy torch format) or `.npz` file.

    Returns {key: array} in stored order. Arrays keep their stored layout (conv weights OIHW,
    linear weights (out, in)) and dtype (float32, int64 `num_batches_tracked`, ...); bfloat16
    is widened to float32. Raises SpadeError for a missing, corrupt, unsafe or non-state-dict file,
    and for one that would make the reader allocate more than `max_bytes` in all (default:
    `default_budget(file size)`, 4x the file's size + 256 MiB). Each call is independent: no
    file can change what a later call does.
    """
    path = Path(path)
    if not path.is_file():
        raise SpadeError(f"{path}: checkpoint file not found" + (" (it is a directory)" if path.is_dir()
                                                                  else ""))
    file_size = path.stat().st_size
    budget = _Budget(path, default_budget(file_size) if max_bytes is None else int(max_bytes))
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
                    if names and all(n.endswith(".npy") for n in names):
                        return _load_npz(path, zf, budget)
                    return _load_zip(path, zf, names, budget)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error,
                    UnicodeDecodeError, NotImplementedError) as e:
                raise SpadeError(f"{path}: corrupt or truncated zip checkpoint ({str(e)[:200]}); download or "
                                 "copy it again") from None
        if head[:1] == b"\x80":
            return _load_legacy(path, budget)
    except MemoryError:
        raise SpadeError(f"{path}: out of memory while reading it, after charging {budget.used:,} bytes "
                         f"of its byte budget of {budget.limit:,}; free memory or lower max_bytes") from None
    if head.startswith(b"\x93NUM"):
        raise SpadeError(f"{path}: a single .npy array, not a state dict; save a dict of arrays with "
                         "np.savez")
    raise SpadeError(f"{path}: not a PyTorch checkpoint (neither zip nor pickle) or an .npz file; "
                     f"{_HINT}")


def _load_npz(path: Path, zf: zipfile.ZipFile, budget: _Budget) -> dict[str, np.ndarray]:
    # numpy allocates each array from its .npy header before reading it: charge the headers first.
    for info in zf.infolist():
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise SpadeError(f"{path}: .npz member '{info.filename}' uses zip method {info.compress_type}"
                             f"{' (encrypted)' if info.flag_bits & 0x1 else ''}; numpy writes only stored "
                             "or deflated members")
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except ValueError as e:
                raise SpadeError(f"{path}: .npz member '{info.filename}' has a bad header ({str(e)[:200]})") \
                    from None
        if dtype.hasobject:
            raise SpadeError(f"{path}: .npz member '{info.filename}' holds Python objects, which needs "
                             "pickle; only plain numeric arrays are accepted")
        budget.charge(math.prod(shape) * dtype.itemsize, f".npz member '{info.filename}' (shape {shape})")
    try:
        with np.load(path, allow_pickle=False) as data:
            result = {key: data[key] for key in data.files}
    except ValueError as e:
        raise SpadeError(f"{path}: .npz holds an array that needs pickle ({e}); only plain numeric "
                         "arrays are accepted") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise SpadeError(f"{path}: corrupt or truncated .npz ({e})") from None
    if not result:
        raise SpadeError(f"{path}: an empty .npz, no tensors")
    return result


def _load_zip(path: Path, zf: zipfile.ZipFile, names: list[str], budget: _Budget) -> dict[str, np.ndarray]:
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    pickles = [n for n in pickles if n.count("/") <= 1]
    if len(pickles) != 1:
        what = "no" if not pickles else f"{len(pickles)}"
        raise SpadeError(f"{path}: a zip file with {what} '<name>/data.pkl' records, so not a torch.save "
                         f"checkpoint; {_HINT}")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        info = zf.getinfo(prefix + "byteorder")
        if info.file_size > 16:
            raise SpadeError(f"{path}: {prefix}byteorder holds {info.file_size} bytes; the file is corrupt")
        byteorder = bytes(_read_record(path, info, budget)).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise SpadeError(f"{path}: unknown byte order '{byteorder}' in {prefix}byteorder")
    load = _Load(path, budget, byteorder)
    data = _read_record(path, zf.getinfo(pickles[0]), budget)
    budget.charge(data.size, "a copy of the pickle")
    obj = load.unpickle(data.tobytes(), "pickle")
    del data
    plan = _plan(path, obj, load)
    for ref in load.storages.values():
        record = f"{prefix}data/{ref.key}"
        if record not in names:
            raise SpadeError(f"{path}: storage record '{record}' is missing; the file is incomplete")
        info = zf.getinfo(record)
        expected = ref.numel * _itemsize(ref.storage_type)
        if info.file_size != expected:  # checked before reading
            raise SpadeError(f"{path}: storage record '{record}' holds {info.file_size} bytes, expected "
                             f"{expected}; the file is corrupt")
        load.arrays[ref.key] = _storage_array(path, ref, _read_record(path, info, None), byteorder)
    return _materialise_all(path, plan, load)


def _read_record(path: Path, info: zipfile.ZipInfo, budget: _Budget | None) -> np.ndarray:
    """A zip record's bytes in a fresh writable buffer, read straight from its place in the file
    (one copy), after checking it is stored, lies inside the file under its own local header, and
    fits the budget (None: already charged); its CRC is checked here."""
    if info.flag_bits & 0x1:
        raise SpadeError(f"{path}: zip record '{info.filename}' is encrypted; torch.save never encrypts, "
                         f"so this file was not written by torch; {_HINT}")
    if info.compress_type != zipfile.ZIP_STORED:
        raise SpadeError(f"{path}: zip record '{info.filename}' is compressed (zip method "
                         f"{info.compress_type}); torch.save never compresses its records, so it is refused "
                         f"rather than inflated; {_HINT}")
    file_size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for '{info.filename}'")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        if fh.read(name_len) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"):
            raise zipfile.BadZipFile(f"record '{info.filename}' points at another record's local header")
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > file_size or info.compress_size != info.file_size:
            raise zipfile.BadZipFile(f"record '{info.filename}' is cut short")
        if budget is not None:
            budget.charge(info.file_size, f"zip record '{info.filename}'")
        fh.seek(start)
        buf = np.empty(info.file_size, np.uint8)  # not zero-filled: readinto fills it
        if fh.readinto(memoryview(buf)) != info.file_size:
            raise zipfile.BadZipFile(f"record '{info.filename}' is cut short")
    if zlib.crc32(buf) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file '{info.filename}'")
    return buf


def _load_legacy(path: Path, budget: _Budget) -> dict[str, np.ndarray]:
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        header = _Load(path, budget)  # the header pickles hold no globals a state dict needs
        magic = header.unpickle_from(f, file_size, "header")
        if magic != _LEGACY_MAGIC:
            raise SpadeError(f"{path}: a pickle, but not a torch.save checkpoint (no torch magic number); "
                             f"{_HINT}")
        protocol = header.unpickle_from(f, file_size, "header")
        if protocol != _LEGACY_PROTOCOL:
            raise SpadeError(f"{path}: unsupported legacy torch protocol version {str(protocol)[:100]}")
        sys_info = header.unpickle_from(f, file_size, "header")
        little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
        byteorder = "little" if little is not False else "big"
        load = _Load(path, budget, byteorder)
        obj = load.unpickle_from(f, file_size, "pickle")
        keys = load.unpickle_from(f, file_size, "storage key list")
        plan = _plan(path, obj, load)
        if (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
                or len(set(keys)) != len(keys) or set(keys) != set(load.storages)):
            raise SpadeError(f"{path}: storage key list does not match the tensors; the file is corrupt")
        for key in keys:
            ref = load.storages[key]
            header_bytes = f.read(8)
            if len(header_bytes) != 8:
                raise SpadeError(f"{path}: truncated: storage '{key}' is missing; copy the file again")
            count = struct.unpack("<q" if byteorder == "little" else ">q", header_bytes)[0]
            if count != ref.numel:
                raise SpadeError(f"{path}: storage '{key}' has {count} elements, the pickle says "
                                 f"{ref.numel}; the file is corrupt")
            nbytes = count * _itemsize(ref.storage_type)
            if f.tell() + nbytes > file_size:  # before allocating what the header claims
                raise SpadeError(f"{path}: truncated: storage '{key}' is cut short; copy the file again")
            raw = np.empty(nbytes, np.uint8)
            if f.readinto(memoryview(raw)) != raw.size:
                raise SpadeError(f"{path}: truncated: storage '{key}' is cut short; copy the file again")
            load.arrays[key] = _storage_array(path, ref, raw, byteorder)
    return _materialise_all(path, plan, load)


def _storage_array(path: Path, ref: _StorageRef, raw: np.ndarray, byteorder: str) -> np.ndarray:
    dtype = ref.storage_type.dtype
    bfloat16 = dtype == "bfloat16"
    np_dtype = np.dtype("<u2" if bfloat16 else dtype)
    if byteorder == "big":
        np_dtype = np_dtype.newbyteorder(">")
    if raw.size != ref.numel * np_dtype.itemsize:
        raise SpadeError(f"{path}: storage '{ref.key}' has {raw.size} bytes, expected "
                         f"{ref.numel * np_dtype.itemsize}; the file is truncated or corrupt")
    array = raw.view(np_dtype)
    if bfloat16:  # bfloat16 is the top half of a float32
        wide = array.astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    return array.astype(np_dtype.newbyteorder("="), copy=False)


def _plan(path: Path, obj, load: _Load) -> list[tuple[str, _StorageRef, int, tuple, tuple, bool]]:
    """Check the state dict and every tensor's layout against its storage, and charge the copies,
    all before any storage byte is read. Returns (key, storage, offset, size, stride, copy)."""
    if isinstance(obj, _LazyTensor):
        raise SpadeError(f"{path}: holds a single tensor, not a state dict; {_HINT}")
    if not isinstance(obj, dict):
        raise SpadeError(f"{path}: holds a {type(obj).__name__}, not a state dict; {_HINT}")
    if not obj:
        raise SpadeError(f"{path}: holds an empty state dict (no tensors); {_HINT}")
    users = collections.Counter(id(v.storage) for v in obj.values() if isinstance(v, _LazyTensor))
    plan = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise SpadeError(f"{path}: state-dict key {str(key)[:100]} is not a string; {_HINT}")
        shown = key[:200]
        if not isinstance(value, _LazyTensor):
            nested = ""
            if isinstance(value, dict):
                nested = (f" (it is a dict: if the weights are inside, save `checkpoint['{shown}']` "
                          "on its own)")
            raise SpadeError(f"{path}: entry '{shown}' holds {type(value).__name__}, not a tensor{nested}; "
                             f"this is not a plain state dict; {_HINT}")
        plan.append(_plan_tensor(path, shown, value, users[id(value.storage)] == 1, load))
    return plan


def _plan_tensor(path: Path, key: str, tensor: _LazyTensor, sole_user: bool, load: _Load):
    ref, offset, size, stride = tensor.storage, tensor.offset, tensor.size, tensor.stride

    def bad(why: str) -> SpadeError:
        return SpadeError(f"{path}: tensor '{key}' {why}; the file is corrupt")

    if not isinstance(ref, _StorageRef):
        raise bad("has no storage")
    if not (type(offset) is int and isinstance(size, tuple | list) and isinstance(stride, tuple | list)):
        raise bad("has a malformed layout")
    size, stride = tuple(size), tuple(stride)
    valid = all(type(v) is int and v >= 0 for v in size + stride)
    if len(size) != len(stride) or len(size) > 64 or not valid or offset < 0:
        raise bad(f"has an invalid layout (size {str(size)[:100]}, stride {str(stride)[:100]}, "
                  f"offset {offset})")
    numel = math.prod(size)
    itemsize = _out_itemsize(ref.storage_type)
    if numel == 0:
        span = math.prod(n for n in size if n) * itemsize  # numpy must still be able to describe it
        if span > load.budget.limit:
            raise bad(f"is too large to hold in memory (size {size})")
        return key, ref, offset, size, stride, True
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= ref.numel:
        raise bad(f"reaches element {last} of a storage of {ref.numel}")
    whole = offset == 0 and ref.numel == numel and stride == _contiguous_strides(size)
    copy = not (whole and sole_user)
    if copy:  # views, and views that expand a storage (stride 0), count at their full size
        what = (f"tensor '{key}', a broadcast view of {numel} elements over a storage of {ref.numel}"
                if numel > ref.numel else f"tensor '{key}' ({numel:,} elements)")
        load.budget.charge(numel * itemsize, what)
    return key, ref, offset, size, stride, copy


def _materialise_all(path: Path, plan, load: _Load) -> dict[str, np.ndarray]:
    result: dict[str, np.ndarray] = {}
    for key, ref, offset, size, stride, copy in plan:
        storage = load.arrays[ref.key]
        if math.prod(size) == 0:
            result[key] = np.zeros(size, dtype=storage.dtype)
        elif not copy:
            result[key] = storage.reshape(size)  # the usual case: the storage buffer is this tensor's own
        else:
            view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                                   strides=tuple(s * storage.dtype.itemsize for s in stride),
                                                   writeable=False)
            result[key] = np.array(view, copy=True, order="C")  # own memory; never aliases a storage
    return result


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))
