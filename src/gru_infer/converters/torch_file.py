"""Read ``torch.save`` checkpoints (``.pt`` / ``.pth``) without torch.

Two container formats exist (see ``torch/serialization.py``):

* zip (torch >= 1.6, the default): records under one top folder ``<root>/``:
  ``data.pkl`` (the pickle), ``data/<key>`` (raw bytes of each storage),
  ``byteorder`` ("little"/"big", absent before torch 2.1: little),
  ``version``, ``.format_version``, ``.storage_alignment``, ...
  Persistent ids are ``('storage', storage_type, key, location, numel)``.

* legacy (``_use_new_zipfile_serialization=False``, or torch < 1.6): a plain
  stream of pickles -- the magic number, the protocol version (1001), a
  ``sys_info`` dict, the main pickle (persistent ids
  ``('storage', storage_type, key, location, numel, view_metadata)``), the
  sorted list of storage keys -- followed, for each key in that order, by an
  8-byte little-endian element count and the raw little-endian bytes.
  Because the storages come after the pickle that needs their dtypes, the
  main pickle is read twice: once for its structure, once to rebuild tensors.

The older tar format (torch < 0.4) and TorchScript archives are refused with
a clear message.  Every problem with a file's *contents* raises
``CheckpointError`` (a ``ValueError``) naming the file; a file that cannot be
opened at all raises the usual ``OSError``.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable
from typing import Any, BinaryIO, Callable

import numpy as np

from ._pickle import (
    CheckpointError,
    MemoryBudget,
    PickledObject,
    RestrictedUnpickler,
    Storage,
    StorageRef,
    UnsafeCheckpointError,
)

__all__ = [
    "CheckpointError",
    "PickledObject",
    "UnsafeCheckpointError",
    "flatten_tensors",
    "load_state_dict",
    "read_torch_file",
]

# From torch/serialization.py.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# A load may allocate at most this much for storages and tensors (see
# MemoryBudget): generous for real checkpoints (bfloat16 -> float32 doubles
# the bytes, storages and tensors both count), fatal to memory bombs.
_BUDGET_PER_FILE_BYTE = 4
_BUDGET_FLOOR = 64 * 2**20

_MAX_NESTING = 100


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """Load the object a ``torch.save`` file holds, without torch.

    Tensors (and ``nn.Parameter``) become NumPy arrays: float32, float64,
    float16, int*, uint8, bool, complex; bfloat16 is widened to float32.
    Dicts, lists, tuples and sets keep their types.  Objects of other classes
    (``torch.save(model)`` pickles the model's own class) become inert
    ``PickledObject`` stand-ins; their classes are never imported.

    Raises ``UnsafeCheckpointError`` if the pickle names a global outside the
    allow-list (nothing from the file has run at that point), and
    ``CheckpointError`` for any other problem with the file's contents.
    Both are ``ValueError`` subclasses, and the message starts with the path.
    A file that cannot be opened at all raises the usual ``OSError``.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        budget = MemoryBudget(_BUDGET_FLOOR + _BUDGET_PER_FILE_BYTE * file_size)
        try:
            return _read(file, file_size, budget)
        except CheckpointError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
        except Exception as exc:
            raise CheckpointError(
                f"{path}: could not read the checkpoint "
                f"({type(exc).__name__}: {exc})") from exc


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a checkpoint and return its tensors as a flat ``name -> array`` dict.

    Works for ``torch.save(model.state_dict())``, for ``torch.save(model)``
    (names as ``model.state_dict()`` would give them: parameters, then
    persistent buffers, then submodules, joined with dots) and for training
    checkpoints that nest state dicts in dicts (``model_state_dict.gru.
    weight_ih_l0``, optimizer tensors included).  Non-tensor values are
    dropped.  Raises ``CheckpointError`` (a ``ValueError``) if the file holds
    no named tensors, plus everything ``read_torch_file`` raises.
    """
    obj = read_torch_file(path)
    try:
        flat = flatten_tensors(obj)
    except CheckpointError as exc:
        raise type(exc)(f"{os.fspath(path)}: {exc}") from exc
    if not flat:
        raise CheckpointError(
            f"{os.fspath(path)}: the checkpoint holds no named tensors "
            f"(its top-level object is {_describe(obj)})")
    return flat


def flatten_tensors(obj: Any) -> dict[str, np.ndarray]:
    """Flatten the arrays inside ``obj`` (as ``read_torch_file`` returns it)
    into dotted names.  See ``load_state_dict``."""
    if isinstance(obj, np.ndarray):
        raise CheckpointError("the checkpoint holds a single bare tensor, not named tensors")
    flat: dict[str, np.ndarray] = {}
    _flatten_into(flat, obj, prefix="", in_progress=set(), depth=0)
    return flat


# ---------------------------------------------------------------------------
# Container detection
# ---------------------------------------------------------------------------

def _read(file: BinaryIO, file_size: int, budget: MemoryBudget) -> Any:
    head = file.read(512)
    file.seek(0)
    if not head:
        raise CheckpointError("the file is empty")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _read_zip(file, budget)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(
            "this is the tar-based format of torch < 0.4, which is not "
            "supported; re-save it with a current torch")
    return _read_legacy(file, file_size, budget)


def _unpickle(stream: BinaryIO, load_storage: Callable[[StorageRef], Storage],
              budget: MemoryBudget, what: str) -> Any:
    """Run the restricted unpickler, turning any failure into CheckpointError."""
    try:
        return RestrictedUnpickler(stream, load_storage, budget).load()
    except CheckpointError as exc:
        raise type(exc)(f"{what}: {exc}") from exc
    except EOFError as exc:
        raise CheckpointError(f"{what}: the pickle is truncated") from exc
    except Exception as exc:
        raise CheckpointError(
            f"{what}: corrupt pickle ({type(exc).__name__}: {exc})") from exc


def _no_storages(ref: StorageRef) -> Storage:
    raise CheckpointError("unexpected tensor data in a legacy header pickle")


# ---------------------------------------------------------------------------
# Zip format
# ---------------------------------------------------------------------------

def _read_zip(file: BinaryIO, budget: MemoryBudget) -> Any:
    try:
        archive = zipfile.ZipFile(file)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, UnicodeDecodeError, ...
        raise CheckpointError(
            f"damaged or truncated zip archive ({type(exc).__name__}: {exc})") from exc
    with archive:
        names = archive.namelist()
        if not names:
            raise CheckpointError("the zip archive is empty")
        # torch puts every record under one folder named after the file at
        # save time; like torch, take it from the first record.
        if "/" not in names[0]:
            raise CheckpointError(f"zip record {names[0]!r} is not inside a folder; "
                                  "not a torch.save archive")
        root = names[0].split("/", 1)[0] + "/"
        records = set(names)
        if f"{root}constants.pkl" in records or any(n.startswith(f"{root}code/") for n in names):
            raise CheckpointError(
                "this is a TorchScript archive (torch.jit.save), not a "
                "torch.save checkpoint; save model.state_dict() with torch.save")
        pickle_name = f"{root}data.pkl"
        if pickle_name not in records:
            raise CheckpointError(f"the zip archive has no {pickle_name!r} record; "
                                  "not a torch.save checkpoint")
        byteorder = _zip_byteorder(archive, f"{root}byteorder", records, budget)

        raw_by_key: dict[str, np.ndarray] = {}

        def load_storage(ref: StorageRef) -> Storage:
            raw = raw_by_key.get(ref.key)
            if raw is None:
                raw = _read_storage_record(archive, f"{root}data/{ref.key}", ref, budget)
                raw_by_key[ref.key] = raw
            elif raw.size != ref.nbytes:
                raise CheckpointError(
                    f"storage {ref.key!r} is referenced with two different sizes")
            return Storage(ref.dtype, raw, byteorder)

        pickle_bytes = _read_record(archive, pickle_name, budget)
        return _unpickle(io.BytesIO(pickle_bytes), load_storage, budget, "data.pkl")


def _read_record(archive: zipfile.ZipFile, name: str, budget: MemoryBudget) -> bytes:
    info = archive.getinfo(name)
    budget.charge(info.file_size, f"zip record {name!r}")  # before inflating anything
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"zip record {name!r} is damaged or truncated ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. zlib.error, NotImplementedError
        raise CheckpointError(
            f"zip record {name!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    if len(data) != info.file_size:
        raise CheckpointError(f"zip record {name!r} is truncated")
    return data


def _zip_byteorder(archive: zipfile.ZipFile, name: str, records: set[str],
                   budget: MemoryBudget) -> str:
    if name not in records:
        return "little"  # torch's default for archives without the record
    if archive.getinfo(name).file_size > 16:
        raise CheckpointError(f"the {name!r} record is not 'little' or 'big'")
    value = _read_record(archive, name, budget).strip()
    if value not in (b"little", b"big"):
        raise CheckpointError(f"unknown byte order {value[:16]!r} in {name!r}")
    return value.decode("ascii")


def _read_storage_record(archive: zipfile.ZipFile, name: str, ref: StorageRef,
                         budget: MemoryBudget) -> np.ndarray:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CheckpointError(
            f"storage {ref.key!r} is missing: no {name!r} record in the archive") from None
    if info.file_size != ref.nbytes:
        raise CheckpointError(
            f"storage record {name!r} holds {info.file_size} bytes but the pickle "
            f"expects {ref.numel} {ref.dtype.name} elements ({ref.nbytes} bytes)")
    return np.frombuffer(_read_record(archive, name, budget), dtype=np.uint8)


# ---------------------------------------------------------------------------
# Legacy format
# ---------------------------------------------------------------------------

class _ClampedReader:
    """A file whose reads never ask for more than what is left in it.

    A corrupt length prefix would otherwise make ``file.read(n)`` allocate
    ``n`` bytes up front (BufferedReader does) before finding them missing.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size

    def _remaining(self) -> int:
        return max(self._size - self._file.tell(), 0)

    def read(self, n: int | None = -1) -> bytes:
        remaining = self._remaining()
        return self._file.read(remaining if n is None or n < 0 else min(n, remaining))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        return self._file.readinto(view[:self._remaining()])

    def readline(self, limit: int = -1) -> bytes:
        return self._file.readline(limit)

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)


def _read_legacy(file: BinaryIO, file_size: int, budget: MemoryBudget) -> Any:
    file = _ClampedReader(file, file_size)  # type: ignore[assignment]
    try:
        magic = _unpickle(file, _no_storages, budget, "magic number")
    except CheckpointError as exc:
        raise CheckpointError(
            "not a PyTorch checkpoint: neither a zip archive nor a legacy "
            f"torch.save stream ({exc})") from None
    if type(magic) is not int or magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(
            "not a PyTorch checkpoint: wrong magic number "
            f"(got {str(magic)[:40]!r}, expected {LEGACY_MAGIC_NUMBER:#x})")
    protocol = _unpickle(file, _no_storages, budget, "protocol version")
    if type(protocol) is not int or protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(
            f"unsupported legacy protocol version {str(protocol)[:40]!r} "
            f"(expected {LEGACY_PROTOCOL_VERSION})")
    sys_info = _unpickle(file, _no_storages, budget, "sys_info")
    if not isinstance(sys_info, dict):
        raise CheckpointError("the legacy sys_info record is not a dict")
    # sys_info["little_endian"] describes the saving machine only: torch
    # always writes legacy storages (and their counts) little-endian.
    main_pickle_start = file.tell()

    # Pass 1: learn which storages the pickle uses, and their dtypes.
    refs: dict[str, StorageRef] = {}

    def note_storage(ref: StorageRef) -> Storage:
        refs.setdefault(ref.key, ref)
        return Storage(ref.dtype, None, "little")

    _unpickle(file, note_storage, budget, "main pickle")
    keys = _unpickle(file, _no_storages, budget, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("the legacy storage key list is not a list of strings")

    raw_by_key = {key: _read_legacy_storage(file, file_size, key, refs, budget)
                  for key in keys}
    missing = sorted(set(refs) - set(raw_by_key))
    if missing:
        raise CheckpointError(
            f"the pickle uses storages {missing[:5]} that the file does not hold")

    # Pass 2: rebuild the object with the storages in hand.
    def load_storage(ref: StorageRef) -> Storage:
        raw = raw_by_key[ref.key]
        if raw.size != ref.nbytes:
            raise CheckpointError(
                f"storage {ref.key!r} is referenced with two different sizes")
        if ref.view is not None:
            raw = _legacy_storage_view(raw, ref)
        return Storage(ref.dtype, raw, "little")

    file.seek(main_pickle_start)
    return _unpickle(file, load_storage, budget, "main pickle")


def _read_legacy_storage(file: BinaryIO, file_size: int, key: str,
                         refs: dict[str, StorageRef], budget: MemoryBudget) -> np.ndarray:
    ref = refs.get(key)
    if ref is None:
        raise CheckpointError(f"the file stores storage {key!r}, which the pickle never uses")
    header = file.read(8)
    if len(header) != 8:
        raise CheckpointError(f"truncated before the data of storage {key!r}")
    count = int.from_bytes(header, "little", signed=True)
    if count != ref.numel:
        raise CheckpointError(
            f"storage {key!r} holds {count} elements but the pickle expects {ref.numel}")
    nbytes = count * ref.dtype.itemsize
    remaining = file_size - file.tell()
    if nbytes > remaining:
        raise CheckpointError(
            f"truncated: storage {key!r} needs {nbytes} bytes but only "
            f"{remaining} remain in the file")
    budget.charge(nbytes, f"storage {key!r}")
    data = file.read(nbytes)
    if len(data) != nbytes:
        raise CheckpointError(f"truncated inside the data of storage {key!r}")
    return np.frombuffer(data, dtype=np.uint8)


def _legacy_storage_view(raw: np.ndarray, ref: StorageRef) -> np.ndarray:
    """torch < 0.4 could save a storage that views part of another."""
    assert ref.view is not None
    _view_key, offset, size = ref.view
    item = ref.dtype.itemsize
    if (offset + size) * item > raw.size:
        raise CheckpointError(
            f"storage view ({offset}, {size}) runs past storage {ref.key!r}")
    return raw[offset * item:(offset + size) * item]


# ---------------------------------------------------------------------------
# Flattening to a state dict
# ---------------------------------------------------------------------------

def _flatten_into(flat: dict[str, np.ndarray], obj: Any, prefix: str,
                  in_progress: set[int], depth: int) -> None:
    if isinstance(obj, np.ndarray):
        if prefix in flat:
            raise CheckpointError(f"two tensors are both named {prefix!r}")
        flat[prefix] = obj
        return
    children = _named_children(obj)
    if children is None:
        return  # ints, strings, None, ...: not tensors
    if id(obj) in in_progress:
        return  # a reference cycle (a module that holds its parent, say)
    if depth >= _MAX_NESTING:
        raise CheckpointError(f"containers nested more than {_MAX_NESTING} deep")
    in_progress.add(id(obj))
    try:
        for name, child in children:
            _flatten_into(flat, child, f"{prefix}.{name}" if prefix else name,
                          in_progress, depth + 1)
    finally:
        in_progress.discard(id(obj))


def _named_children(obj: Any) -> Iterable[tuple[str, Any]] | None:
    if isinstance(obj, dict):
        return [(str(key), value) for key, value in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(str(index), value) for index, value in enumerate(obj)]
    if isinstance(obj, PickledObject):
        if obj.is_module:
            return _module_children(obj)
        if obj.items:  # a dict subclass
            return [(str(key), value) for key, value in obj.items.items()]
        if obj.list_items:  # a list subclass
            return [(str(index), value) for index, value in enumerate(obj.list_items)]
    return None


def _module_children(module: PickledObject) -> list[tuple[str, Any]]:
    """What ``nn.Module.state_dict()`` would walk: parameters, persistent
    buffers, then submodules."""
    attributes = module.attributes
    non_persistent = attributes.get("_non_persistent_buffers_set")
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = ()
    buffers = attributes.get("_buffers")
    children = [(str(name), value) for name, value in attributes["_parameters"].items()
                if value is not None]
    if isinstance(buffers, dict):
        children += [(str(name), value) for name, value in buffers.items()
                     if value is not None and name not in non_persistent]
    children += [(str(name), value) for name, value in attributes["_modules"].items()
                 if value is not None]
    return children


def _describe(obj: Any) -> str:
    if isinstance(obj, PickledObject):
        return f"an object of class {obj.qualified_name}"
    return f"a {type(obj).__name__}"
