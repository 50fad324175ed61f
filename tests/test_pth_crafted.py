"""Crafted checkpoints, written here opcode by opcode and record by record, against the reader.

Every file in CORPUS is loaded in one child process whose address space is bounded
(resource.RLIMIT_AS: what it had after imports + 1 GiB), so a decompression bomb or a huge
allocation fails there instead of taking the machine down. Each must be refused with a SpadeError
that names the file and matches the reason given here; an out-of-memory error under the bound does
not count as a refusal (its message differs). CONTROLS, written by the same helpers, must load, so
each refusal is due to what was crafted, not to the helpers. The official checkpoints are loaded in
the same child before and after the whole corpus and must be bit-identical (a file that changed
the reader, e.g. by a BUILD on an allowed global, would show here).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFICIAL

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
HEADROOM = 2**30  # bytes the child may allocate beyond what it holds after its imports
OFFICIAL_FILES = ["tiny_seg/latest_net_G.pth", "tiny_vae/latest_net_G.pth"]  # legacy, zip


# ---- pickle opcodes ----------------------------------------------------------------------------
def s(text: str) -> bytes:
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    if 0 <= n < 256:
        return pickle.BININT1 + bytes([n])
    if -(2**31) <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    raw = n.to_bytes(n.bit_length() // 8 + 1, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def g(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def tup(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + pickle.REDUCE


def plain_dict(*pairs: tuple[bytes, bytes]) -> bytes:
    return pickle.EMPTY_DICT + (pickle.MARK + b"".join(k + v for k, v in pairs) + pickle.SETITEMS
                                if pairs else b"")


def ordered_dict(*pairs: tuple[str, bytes]) -> bytes:
    body = call(g("collections", "OrderedDict"))
    return body + (pickle.MARK + b"".join(s(k) + v for k, v in pairs) + pickle.SETITEMS if pairs else b"")


def storage(key: str, numel: int, kind: str = "FloatStorage", legacy: bool = False,
            view: bytes | None = None) -> bytes:
    extra = (view or pickle.NONE,) if legacy else ()
    return tup(s("storage"), g("torch", kind), s(key), s("cpu"), i(numel), *extra) + pickle.BINPERSID


def tensor(stor: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    return call(g("torch._utils", "_rebuild_tensor_v2"), stor, i(offset), tup(*map(i, size)),
                tup(*map(i, stride)), pickle.NEWFALSE, call(g("collections", "OrderedDict")))


def pkl(*body: bytes, protocol: int = 2) -> bytes:
    return pickle.PROTO + bytes([protocol]) + b"".join(body) + pickle.STOP


def floats(*values: float) -> bytes:
    return np.array(values, "<f4").tobytes()


# ---- files ---------------------------------------------------------------------------------
def write_zip(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None,
              pkl_method: int = zipfile.ZIP_STORED, record_method: int = zipfile.ZIP_STORED,
              byteorder: str = "little") -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl, compress_type=pkl_method)
        zf.writestr("archive/byteorder", byteorder)
        for key, raw in (records or {}).items():
            zf.writestr(f"archive/data/{key}", raw, compress_type=record_method)
    return path.read_bytes()


def write_legacy(path: Path, main_pkl: bytes, storages: list[tuple[str, int, bytes]] | None = None,
                 magic: int = LEGACY_MAGIC, protocol: int = 1001, keys: list | None = None) -> None:
    storages = storages or []
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        magic, protocol, {"protocol_version": 1001, "little_endian": True,
                          "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    keys = [k for k, _, _ in storages] if keys is None else keys
    tail = b"".join(struct.pack("<q", n) + raw for _, n, raw in storages)
    path.write_bytes(head + main_pkl + pickle.dumps(keys, protocol=2) + tail)


def patch_central(data: bytes, name: str, **fields: int) -> bytes:
    """Overwrite fields of `name`'s central-directory entry (what zipfile.ZipFile reads)."""
    offsets = {"flags": (8, "<H"), "compress_size": (20, "<I"), "file_size": (24, "<I"),
               "header_offset": (42, "<I")}
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", out, pos + 28)[0]
        if out[pos + 46: pos + 46 + name_len] == name.encode():
            for field, value in fields.items():
                at, fmt = offsets[field]
                struct.pack_into(fmt, out, pos + at, value)
            return bytes(out)
        pos = out.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{name} not in the central directory")


def zipped(main: bytes, records: dict[str, bytes] | None = None, **kw):
    return lambda p: write_zip(p, pkl(main), records, **kw)


def legacy(main: bytes, storages: list[tuple[str, int, bytes]] | None = None, **kw):
    return lambda p: write_legacy(p, pkl(main), storages, **kw)


def both(name: str, make, message: str) -> list[tuple]:
    """The same crafted pickle in the zip and the legacy format (storage ids differ), each with
    storage '0' (four float32s) present, so only the crafted part can be at fault."""
    return [(f"{name}_zip", zipped(make(False), {"0": W4}), message),
            (f"{name}_legacy", legacy(make(True), [("0", 4, W4)]), message)]


W4 = floats(1, 2, 3, 4)


def good_sd(lg: bool) -> bytes:
    return ordered_dict(("w", tensor(storage("0", 4, legacy=lg), 0, (4,), (1,))))


# ---- crafted files that need more than one pickle ----------------------------------------------
def deflate_bomb(path: Path) -> None:
    # 256 MiB of zeros in a few hundred KiB, as storage '0' of 2**26 float32s
    info = zipfile.ZipInfo("archive/data/0")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as zf:
        sd = ordered_dict(("w", tensor(storage("0", 2**26), 0, (2**26,), (1,))))
        zf.writestr("archive/data.pkl", pkl(sd))
        zf.writestr("archive/byteorder", "little")
        with zf.open(info, "w") as out:
            chunk = bytes(2**20)
            for _ in range(256):
                out.write(chunk)


def record_past_end(path: Path) -> None:
    sd = ordered_dict(("w", tensor(storage("0", 2**24), 0, (4,), (1,))))
    data = write_zip(path, pkl(sd), {"0": W4})
    path.write_bytes(patch_central(data, "archive/data/0", compress_size=2**26, file_size=2**26))


def overlapping_records(path: Path) -> None:
    sd = ordered_dict(("a", tensor(storage("0", 4), 0, (4,), (1,))),
                      ("b", tensor(storage("1", 4), 0, (4,), (1,))))
    data = write_zip(path, pkl(sd), {"0": W4, "1": W4})
    with zipfile.ZipFile(path) as zf:
        first = zf.getinfo("archive/data/0").header_offset
    path.write_bytes(patch_central(data, "archive/data/1", header_offset=first))


def encrypted(path: Path) -> None:
    data = write_zip(path, pkl(good_sd(False)), {"0": W4})
    path.write_bytes(patch_central(data, "archive/data.pkl", flags=1))


def truncated_zip(path: Path) -> None:
    data = write_zip(path, pkl(good_sd(False)), {"0": floats(*range(1000))})
    path.write_bytes(data[: len(data) * 6 // 10])


def two_pickles(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/data.pkl", pkl(good_sd(False)))
        zf.writestr("b/data.pkl", pkl(good_sd(False)))


def npz_huge_header(path: Path) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**40,)}
    body = repr(header).encode()
    body += b" " * ((64 - (10 + len(body) + 1) % 64) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + W4
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", npy)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz_object(path: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, w=np.array([{"x": 1}], dtype=object))


def no_data_pkl(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data/0", W4)
        zf.writestr("archive/version", "3")


def views(lg: bool) -> bytes:  # 1000 views of 2**20 elements over one element: 4 GiB in all
    one = storage("0", 1, legacy=lg)
    return ordered_dict(*[(f"w{n}", tensor(one, 0, (2**20,), (0,))) for n in range(1000)])


DEEP_TUPLE = pickle.EMPTY_TUPLE + pickle.TUPLE1 * 100_000
DEEP_LIST = pickle.EMPTY_LIST * 100_000 + pickle.APPEND * 99_999


MARKER = "pwned"  # the child runs in the corpus folder: a file a payload would create there
SHARED_VIEWS = [(f"w{n}", tensor(storage("0", 2**16), 0, (2**16,), (1,))) for n in range(2000)]  # 500 MiB

CORPUS: list[tuple] = [
    # foreign globals: refused before anything is called
    *both("global_os_system", lambda lg: ordered_dict(("w", call(g("os", "system"), s(f"touch {MARKER}")))),
          r"refuses to load global 'os\.system'"),
    *both("global_builtins_eval", lambda lg: ordered_dict(("w", call(g("builtins", "eval"), s("1")))),
          r"refuses to load global 'builtins\.eval'"),
    ("global_module_class_zip", zipped(call(g("torch.nn.modules.conv", "Conv2d"))),
     r"refuses to load global 'torch\.nn\.modules\.conv\.Conv2d'"),
    ("stack_global_posix_system_zip",
     lambda p: write_zip(p, pkl(s("posix"), pickle.MEMOIZE, s("system"), pickle.STACK_GLOBAL, tup(s("id")),
                                pickle.REDUCE, protocol=4)),
     r"refuses to load global 'posix\.system'"),
    ("global_in_legacy_header", lambda p: p.write_bytes(pkl(call(g("os", "system"), s(f"touch {MARKER}")))),
     r"refuses to load global 'os\.system'"),
    # changing the allowed objects (BUILD / SETITEM / attributes), then a valid state dict
    *both("build_on_storage_type",
          lambda lg: g("torch", "FloatStorage") + plain_dict((s("dtype"), s("<f8"))) + pickle.BUILD
          + pickle.POP + good_sd(lg),
          r"refused: the pickle changes allowed global 'torch\.FloatStorage' \(BUILD\)"),
    ("build_slots_on_rebuild_function_zip",
     zipped(g("torch._utils", "_rebuild_tensor_v2") + tup(pickle.NONE, plain_dict((s("__defaults__"), tup())))
            + pickle.BUILD + pickle.POP + good_sd(False), {"0": W4}),
     r"refused: the pickle changes allowed global 'torch\._utils\._rebuild_tensor_v2' \(BUILD\)"),
    ("build_on_ordereddict_zip",
     zipped(g("collections", "OrderedDict") + plain_dict((s("x"), i(1))) + pickle.BUILD + pickle.POP
            + good_sd(False), {"0": W4}),
     r"refused: the pickle changes allowed global 'collections\.OrderedDict' \(BUILD\)"),
    *both("setitem_on_ordereddict",
          lambda lg: g("collections", "OrderedDict") + s("w") + i(1) + pickle.SETITEM + pickle.POP
          + good_sd(lg),
          r"refused: the pickle sets an item of allowed global 'collections\.OrderedDict' \(SETITEM\)"),
    ("setitems_on_storage_type_legacy",
     legacy(g("torch", "LongStorage") + pickle.MARK + s("dtype") + s("<f4") + pickle.SETITEMS + pickle.POP
            + good_sd(True), [("0", 4, W4)]),
     r"refused: the pickle sets an item of allowed global 'torch\.LongStorage' \(SETITEM\)"),
    ("build_on_tensor_zip",
     zipped(ordered_dict(("w", tensor(storage("0", 4), 0, (4,), (1,))
                          + plain_dict((s("size"), tup(i(10**9)))) + pickle.BUILD)), {"0": W4}),
     r"refused: the pickle changes a tensor \(BUILD\)"),
    ("build_on_storage_ref_zip",
     zipped(storage("0", 4) + plain_dict((s("numel"), i(1))) + pickle.BUILD + pickle.POP + good_sd(False),
            {"0": W4}),
     r"refused: the pickle changes storage '0' \(BUILD\)"),
    ("append_to_marker_zip", zipped(g("torch", "Tensor") + i(1) + pickle.APPEND),
     r"corrupt or truncated pickle"),
    # REDUCE chains
    ("reduce_storage_type_zip", zipped(ordered_dict(("w", call(g("torch", "FloatStorage"), i(10**12))))),
     r"corrupt or truncated pickle \(TypeError"),
    ("reduce_from_type_foreign_func_zip",
     zipped(ordered_dict(("w", call(g("torch._tensor", "_rebuild_from_type_v2"),
                                    g("collections", "OrderedDict"), g("torch", "Tensor"), tup(),
                                    plain_dict())))),
     r"refused: _rebuild_from_type_v2 is called with something other than a tensor rebuild"),
    ("reduce_parameter_chain_zip",
     zipped(ordered_dict(("w", call(g("torch._utils", "_rebuild_parameter"),
                                    call(g("torch._utils", "_rebuild_parameter"),
                                         call(g("collections", "OrderedDict"))), pickle.NEWFALSE)))),
     r"entry 'w' holds OrderedDict, not a tensor"),
    ("reduce_tensor_without_storage_zip", zipped(ordered_dict(("w", tensor(s("0"), 0, (4,), (1,))))),
     r"tensor 'w' has no storage"),
    ("reduce_tensor_of_tensor_zip",
     zipped(ordered_dict(("w", tensor(tensor(storage("0", 4), 0, (4,), (1,)), 0, (4,), (1,)))), {"0": W4}),
     r"tensor 'w' has no storage"),
    # views: stride 0, huge dimensions, offsets past the storage
    ("stride0_views_zip", zipped(views(False), {"0": floats(1)}),
     r"byte budget .* at tensor 'w\d+', a broadcast view of 1048576 elements over a storage of 1"),
    ("stride0_views_legacy", legacy(views(True), [("0", 1, floats(1))]),
     r"byte budget .* at tensor 'w\d+', a broadcast view of 1048576 elements over a storage of 1"),
    ("shared_storage_views_zip", zipped(ordered_dict(*SHARED_VIEWS), {"0": bytes(2**18)}),
     r"byte budget .* at tensor 'w\d+' \(65,536 elements\)"),
    *both("huge_dimension_view",
          lambda lg: ordered_dict(("w", tensor(storage("0", 4, legacy=lg), 0, (2**40, 2**40), (0, 0)))),
          r"byte budget .* at tensor 'w', a broadcast view of \d+ elements over a storage of 4"),
    ("huge_dimension_empty_zip",
     zipped(ordered_dict(("w", tensor(storage("0", 4), 0, (0, 10**30), (1, 1)))), {"0": W4}),
     r"tensor 'w' is too large to hold in memory"),
    *both("offset_past_storage",
          lambda lg: ordered_dict(("w", tensor(storage("0", 4, legacy=lg), 4, (), ()))),
          r"tensor 'w' reaches element 4 of a storage of 4"),
    ("huge_offset_zip", zipped(ordered_dict(("w", tensor(storage("0", 4), 2**62, (1,), (1,))))),
     r"tensor 'w' reaches element 4611686018427387904 of a storage of 4"),
    ("stride_past_storage_legacy",
     legacy(ordered_dict(("w", tensor(storage("0", 4, legacy=True), 0, (2, 2), (3, 1)))), [("0", 4, W4)]),
     r"tensor 'w' reaches element 4 of a storage of 4"),
    ("negative_stride_zip", zipped(ordered_dict(("w", tensor(storage("0", 4), 3, (4,), (-1,)))), {"0": W4}),
     r"tensor 'w' has an invalid layout"),
    ("size_stride_mismatch_zip",
     zipped(ordered_dict(("w", tensor(storage("0", 4), 0, (2, 2), (1,)))), {"0": W4}),
     r"tensor 'w' has an invalid layout"),
    *both("huge_storage_claim", lambda lg: ordered_dict(("w", tensor(storage("0", 10**15, legacy=lg), 0, (1,),
                                                                     (1,)))),
          r"byte budget .* at storage '0' \(1,000,000,000,000,000 elements\)"),
    ("many_storage_claims_zip",
     zipped(ordered_dict(*[(f"w{n}", tensor(storage(str(n), 2**20), 0, (1,), (1,))) for n in range(300)])),
     r"byte budget .* at storage '\d+' \(1,048,576 elements\)"),
    # the pickle itself
    ("memo_index_bomb_zip", zipped(pickle.NONE + pickle.LONG_BINPUT + struct.pack("<I", 2**30)),
     r"refused: memo index 1073741824 out of sequence"),
    ("bytes8_length_bomb_zip",
     lambda p: write_zip(p, pkl(pickle.BINBYTES8 + struct.pack("<Q", 2**40) + b"xx", protocol=4)),
     r"corrupt or truncated pickle"),
    ("unicode_length_bomb_legacy",
     lambda p: write_legacy(p, pkl(pickle.BINUNICODE + struct.pack("<I", 2**31))),
     r"corrupt or truncated pickle"),
    *both("deep_tuple_key", lambda lg: pickle.EMPTY_DICT + DEEP_TUPLE + i(1) + pickle.SETITEM,
          r"refused: containers nested more than 100 deep"),
    ("deep_list_zip", zipped(DEEP_LIST),
     r"refused: containers nested more than 100 deep"),
    ("newobj_zip", zipped(g("collections", "OrderedDict") + tup() + pickle.NEWOBJ),
     r"refused: pickle opcode NEWOBJ"),
    ("inst_legacy", legacy(pickle.MARK + s("id") + b"ios\nsystem\n"), r"refused: pickle opcode INST"),
    ("ext1_zip", zipped(pickle.EXT1 + b"\x01"), r"refused: pickle opcode EXT1"),
    ("persistent_id_not_storage_zip",
     zipped(ordered_dict(("w", tup(s("module"), s("x")) + pickle.BINPERSID))),
     r"refused: unsupported persistent id 'module'"),
    ("storage_id_without_type_zip",
     zipped(ordered_dict(("w", tup(s("storage"), s("FloatStorage"), s("0"), s("cpu"), i(4))
                          + pickle.BINPERSID))),
     r"refused: a storage id without a storage type"),
    ("legacy_storage_view",
     legacy(ordered_dict(("w", tensor(storage("0", 4, legacy=True, view=tup(s("1"), i(0), i(4))),
                                      0, (4,), (1,)))), [("0", 4, W4)]),
     r"refused: storage views"),
    # zip containers
    ("compressed_pickle_zip", zipped(good_sd(False), {"0": W4}, pkl_method=zipfile.ZIP_DEFLATED),
     r"zip record 'archive/data\.pkl' is compressed \(zip method 8\)"),
    ("deflate_bomb_zip", deflate_bomb, r"zip record 'archive/data/0' is compressed \(zip method 8\)"),
    ("lzma_record_zip", zipped(good_sd(False), {"0": W4}, record_method=zipfile.ZIP_LZMA),
     r"zip record 'archive/data/0' is compressed \(zip method 14\)"),
    ("encrypted_record_zip", encrypted, r"zip record 'archive/data\.pkl' is encrypted"),
    ("truncated_zip", truncated_zip, r"corrupt or truncated zip"),
    ("record_past_end_zip", record_past_end, r"corrupt or truncated zip .*'archive/data/0' is cut short"),
    ("overlapping_records_zip", overlapping_records,
     r"record 'archive/data/1' points at another record's local header"),
    ("missing_record_zip", zipped(good_sd(False)), r"storage record 'archive/data/0' is missing"),
    ("no_data_pkl_zip", no_data_pkl, r"a zip file with no '<name>/data\.pkl' records"),
    ("two_data_pkl_zip", two_pickles, r"a zip file with 2 '<name>/data\.pkl' records"),
    ("bad_byteorder_zip", zipped(good_sd(False), {"0": W4}, byteorder="middle"),
     r"unknown byte order 'middle'"),
    ("garbage_after_pk", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4),
     r"corrupt or truncated zip"),
    # wrong magic and legacy framing
    ("legacy_wrong_magic", legacy(good_sd(True), [("0", 4, W4)], magic=12345),
     r"a pickle, but not a torch\.save checkpoint"),
    ("legacy_wrong_protocol", legacy(good_sd(True), [("0", 4, W4)], protocol=1000),
     r"unsupported legacy torch protocol version 1000"),
    ("legacy_truncated_storage", legacy(good_sd(True), [("0", 4, W4[:10])]),
     r"truncated: storage '0' is cut short"),
    ("legacy_count_mismatch", lambda p: write_legacy(p, pkl(good_sd(True)), [("0", 5, W4 + floats(5))]),
     r"storage '0' has 5 elements, the pickle says 4"),
    ("legacy_key_list_mismatch", legacy(good_sd(True), [("0", 4, W4)], keys=["1"]),
     r"storage key list does not match the tensors"),
    ("legacy_duplicate_keys", legacy(good_sd(True), [("0", 4, W4)], keys=["0", "0"]),
     r"storage key list does not match the tensors"),
    ("text_file", lambda p: p.write_text("hello"), r"not a PyTorch checkpoint"),
    ("empty_file", lambda p: p.write_bytes(b""), r"not a PyTorch checkpoint"),
    ("single_npy", lambda p: p.write_bytes(npy_bytes(np.ones(3))), r"a single \.npy array"),
    # not a state dict of tensors
    *both("empty_state_dict", lambda lg: ordered_dict(), r"holds an empty state dict"),
    *both("empty_plain_dict", lambda lg: plain_dict(), r"holds an empty state dict"),
    ("nested_state_dict_zip", zipped(ordered_dict(("state_dict", good_sd(False))), {"0": W4}),
     r"entry 'state_dict' holds OrderedDict, not a tensor .*checkpoint\['state_dict'\]"),
    ("nested_list_legacy",
     legacy(ordered_dict(("w", pickle.EMPTY_LIST + tensor(storage("0", 4, legacy=True), 0, (4,), (1,))
                          + pickle.APPEND)), [("0", 4, W4)]),
     r"entry 'w' holds list, not a tensor"),
    ("list_top_zip", zipped(pickle.EMPTY_LIST + i(1) + pickle.APPEND), r"holds a list, not a state dict"),
    ("single_tensor_zip", zipped(tensor(storage("0", 4), 0, (4,), (1,))), r"holds a single tensor"),
    ("int_key_zip", zipped(plain_dict((i(1), tensor(storage("0", 4), 0, (4,), (1,))))),
     r"state-dict key 1 is not a string"),
    ("none_value_legacy", legacy(ordered_dict(("w", pickle.NONE))),
     r"entry 'w' holds NoneType, not a tensor"),
    # .npz goes through the same function and the same budget
    ("npz_huge_header", npz_huge_header,
     r"byte budget .* at \.npz member 'w\.npy' \(shape \(1099511627776,\)\)"),
    ("npz_object", npz_object, r"\.npz member 'w\.npy' holds Python objects, which needs pickle"),
]

# Written by the same helpers, these must load: the refusals above are due to what was crafted.
CONTROLS: list[tuple] = [
    ("control_zip", zipped(good_sd(False), {"0": W4}), {"w": [1, 2, 3, 4]}),
    ("control_legacy", legacy(good_sd(True), [("0", 4, W4)]), {"w": [1, 2, 3, 4]}),
    ("control_stride0_within_budget_zip",
     zipped(ordered_dict(*[(f"w{n}", tensor(storage("0", 1), 0, (1000,), (0,))) for n in range(10)]),
            {"0": floats(7)}), {f"w{n}": [7.0] * 1000 for n in range(10)}),
]

CHILD = r"""
import hashlib, json, resource, sys
from spade_tf.pth import load_state_dict
from spade_tf.errors import SpadeError

cfg = json.loads(sys.argv[1])

def digest(sd):
    h = hashlib.sha256()
    for key, value in sd.items():
        h.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.tobytes())
    return h.hexdigest()

def emit(**record):
    print(json.dumps(record), flush=True)

emit(kind="official_before", digests={p: digest(load_state_dict(p)) for p in cfg["official"]})
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
limit = vm + cfg["headroom"]
resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
try:
    probe = bytearray(2 * cfg["headroom"])
    bounded = False
    del probe
except MemoryError:
    bounded = True
emit(kind="bound", bounded=bounded, limit=resource.getrlimit(resource.RLIMIT_AS)[0])
for name, path in cfg["files"]:
    emit(kind="start", name=name)
    try:
        sd = load_state_dict(path)
        emit(kind="case", name=name, outcome="loaded", values={k: v.ravel().tolist() for k, v in sd.items()})
    except SpadeError as e:
        emit(kind="case", name=name, outcome="SpadeError", message=str(e))
    except BaseException as e:
        emit(kind="case", name=name, outcome=type(e).__name__, message=str(e)[:500])
emit(kind="official_after", digests={p: digest(load_state_dict(p)) for p in cfg["official"]})
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Write CORPUS and CONTROLS, load them all in one address-space-bounded child process."""
    folder = tmp_path_factory.mktemp("crafted")
    files = []
    for name, make, _ in CORPUS + CONTROLS:
        path = folder / f"{name}.pth"
        make(path)
        files.append((name, str(path)))
    official = [str(OFFICIAL / f) for f in OFFICIAL_FILES if (OFFICIAL / f).is_file()]
    cfg = json.dumps({"files": files, "official": official, "headroom": HEADROOM})
    proc = subprocess.run([sys.executable, "-c", CHILD, cfg], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OPENBLAS_NUM_THREADS": "1",
                                            "PYTHONPATH": str(Path(__file__).parents[1])})
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [r["name"] for r in records if r["kind"] == "start"]
    return {"folder": folder, "paths": dict(files), "records": records, "returncode": proc.returncode,
            "stderr": proc.stderr[-3000:], "last_started": started[-1] if started else None,
            "cases": {r["name"]: r for r in records if r["kind"] == "case"},
            "by_kind": {r["kind"]: r for r in records if r["kind"] != "case"}}


def _case(run, name: str) -> dict:
    assert name in run["cases"], (f"the child died (exit {run['returncode']}) while loading "
                                  f"{run['last_started']!r}:\n{run['stderr']}")
    return run["cases"][name]


def test_corpus_names_are_unique():
    names = [c[0] for c in CORPUS + CONTROLS]
    assert len(names) == len(set(names))


def test_child_ran_under_a_bounded_address_space(run):
    assert run["returncode"] == 0, run["stderr"]
    assert run["by_kind"]["bound"]["bounded"], "allocating 2 GiB beyond the imports did not fail"


@pytest.mark.parametrize("name,message", [(c[0], c[2]) for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_crafted_file_is_refused_naming_the_file(run, name, message):
    case = _case(run, name)
    assert case["outcome"] == "SpadeError", case
    path = run["paths"][name]
    assert case["message"].startswith(f"{path}: "), case["message"]
    assert re.search(message, case["message"][len(path) + 2:]), case["message"]


def test_no_payload_ran(run):
    assert "global_os_system_zip" in run["cases"]
    assert not (run["folder"] / MARKER).exists()


@pytest.mark.parametrize("name,expected", [(c[0], c[2]) for c in CONTROLS], ids=[c[0] for c in CONTROLS])
def test_controls_written_by_the_same_helpers_load(run, name, expected):
    case = _case(run, name)
    assert case["outcome"] == "loaded", case
    assert case["values"] == expected


def test_official_checkpoints_are_bit_identical_after_the_corpus(run):
    before, after = run["by_kind"]["official_before"]["digests"], run["by_kind"].get("official_after")
    if not before:
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL}")
    assert after is not None, f"the child did not finish: {run['stderr']}"
    assert len(before) == len(OFFICIAL_FILES) and after["digests"] == before


def test_official_digest_in_child_matches_this_process(run):
    # the child's digest is of the real tensors: recompute one here with a plain load
    from spade_tf.pth import load_state_dict

    path = OFFICIAL / OFFICIAL_FILES[1]
    if not path.is_file():
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL}")
    h = hashlib.sha256()
    for key, value in load_state_dict(path).items():
        h.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.tobytes())
    assert run["by_kind"]["official_before"]["digests"][str(path)] == h.hexdigest()
