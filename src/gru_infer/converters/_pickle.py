"""An allow-listed unpickler for ``torch.save`` checkpoints, without torch.

A checkpoint's pickle names Python globals, and an ordinary unpickler imports
and *calls* them, so loading an untrusted ``.pt`` file can run any code
(``os.system`` is one opcode away).  ``RestrictedUnpickler`` resolves only
what is needed to rebuild tensors and plain containers, in the spirit of
``torch.load(weights_only=True)``:

* containers: ``collections.OrderedDict``, ``set``, ``frozenset``, ... (the
  real, harmless builtins);
* tensor rebuild functions (``torch._utils._rebuild_tensor_v2`` and friends),
  storage classes (``torch.FloatStorage``, ...), dtypes (``torch.float32``)
  and ``torch.Size``: replaced by our own NumPy implementations, never torch;
* classes of pickled objects (``__main__.Net``, ``torch.nn.modules.rnn.GRU``
  in a whole-module ``torch.save(model)``): replaced by inert
  ``PickledObject`` stand-ins that only record the state pickle gives them.
  The real class is never imported.

Every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``,
``torch.load``, any function) raises ``UnsafeCheckpointError`` from
``find_class``, i.e. before anything has run.

The container formats (zip and legacy) live in ``torch_file.py``; this module
only knows the pickle layer and how to turn a storage plus (offset, size,
stride) into a NumPy array.
"""

from __future__ import annotations

import _compat_pickle
import collections
import math
import pickle
import pickletools
import re
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import FormatError

__all__ = [
    "CheckpointError",
    "MemoryBudget",
    "PickledObject",
    "RestrictedUnpickler",
    "Storage",
    "StorageRef",
    "StorageType",
    "TorchDType",
    "UnsafeCheckpointError",
]


class CheckpointError(FormatError):
    """The file is not a checkpoint this reader can load (damaged, truncated,
    unsupported).  A ``ValueError``, so ``except ValueError`` catches it."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint references a global outside the allow-list: loading it
    with plain pickle could run code."""


class _Sealed:
    """Refuses pickle's BUILD opcode.

    BUILD (``obj.__setstate__(state)`` or a ``__dict__``/``setattr`` update)
    can be aimed at any object on the stack, including the objects
    ``find_class`` hands out.  Were those shared and writable, one hostile
    file could re-type ``torch.FloatStorage`` for every later load in the
    process; so they have no ``__dict__`` (``__slots__``), are frozen, and
    refuse ``__setstate__``.  They are immutable, so copies are the object.
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(
            f"the pickle tries to modify {self!r} (BUILD on an allow-listed object)")

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


# ---------------------------------------------------------------------------
# Element types
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchDType(_Sealed):
    """One torch element type and how it maps to NumPy.

    ``stored`` is the NumPy type of the raw bytes (byte order added when the
    storage is read); ``loaded`` is what the caller gets.  They differ for
    bfloat16 (raw uint16 -> float32) and bool (raw uint8 -> bool).
    """

    __slots__ = ("loaded", "name", "storage_class", "stored")

    name: str            # torch name, e.g. "float32"
    storage_class: str   # legacy typed-storage class, e.g. "FloatStorage"
    stored: str          # NumPy type code of the raw elements
    loaded: str          # NumPy type code of the returned arrays

    @property
    def itemsize(self) -> int:
        return np.dtype(self.stored).itemsize

    def to_numpy(self, raw_elements: np.ndarray) -> np.ndarray:
        """Copy (possibly strided, possibly big-endian) raw elements into a
        fresh, contiguous, native-endian array of the ``loaded`` type."""
        if self.name == "bfloat16":
            # bfloat16 is the top half of a float32: shift the bits up.
            widened = raw_elements.astype(np.uint32) << np.uint32(16)
            return widened.view(np.float32)
        if self.name == "bool":
            return raw_elements != 0
        return np.array(raw_elements, dtype=np.dtype(self.loaded), copy=True, order="C")


_DTYPES = [
    TorchDType("float32", "FloatStorage", "f4", "f4"),
    TorchDType("float64", "DoubleStorage", "f8", "f8"),
    TorchDType("float16", "HalfStorage", "f2", "f2"),
    TorchDType("bfloat16", "BFloat16Storage", "u2", "f4"),
    TorchDType("int64", "LongStorage", "i8", "i8"),
    TorchDType("int32", "IntStorage", "i4", "i4"),
    TorchDType("int16", "ShortStorage", "i2", "i2"),
    TorchDType("int8", "CharStorage", "i1", "i1"),
    TorchDType("uint8", "ByteStorage", "u1", "u1"),
    TorchDType("bool", "BoolStorage", "u1", "?"),
    TorchDType("complex64", "ComplexFloatStorage", "c8", "c8"),
    TorchDType("complex128", "ComplexDoubleStorage", "c16", "c16"),
    # Newer dtypes have no typed-storage class; they are saved through
    # _rebuild_tensor_v3 with an explicit dtype on an untyped storage.
    TorchDType("uint16", "", "u2", "u2"),
    TorchDType("uint32", "", "u4", "u4"),
    TorchDType("uint64", "", "u8", "u8"),
]
_DTYPE_BY_NAME = {dtype.name: dtype for dtype in _DTYPES}
_UINT8 = _DTYPE_BY_NAME["uint8"]

# torch spells some dtypes several ways; str(dtype) (what pickle records) is
# the canonical one, the aliases are accepted for leniency.
_DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16",
    "long": "int64", "int": "int32", "short": "int16",
    "cfloat": "complex64", "cdouble": "complex128",
}


@dataclass(frozen=True)
class StorageType(_Sealed):
    """Stand-in for a storage class global such as ``torch.FloatStorage``.

    ``dtype`` is None for ``torch.UntypedStorage`` (raw bytes)."""

    __slots__ = ("dtype", "qualified_name")

    qualified_name: str
    dtype: TorchDType | None

    @property
    def element_dtype(self) -> TorchDType:
        return self.dtype if self.dtype is not None else _UINT8


# ---------------------------------------------------------------------------
# Storages
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StorageRef:
    """A parsed persistent id ``('storage', type, key, location, numel[, view])``."""

    key: str
    dtype: TorchDType
    numel: int
    # Legacy files only: (view_key, offset, size) in elements, for storages
    # that were views of a bigger one (torch < 0.4 wrote these).
    view: tuple[str, int, int] | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True)
class Storage(_Sealed):
    """The bytes of one storage as saved.

    ``raw`` is None while a legacy file's structure is being read ahead of
    its storages (see ``torch_file``); tensors rebuilt from such a storage
    come out as None and are thrown away.
    """

    __slots__ = ("byteorder", "dtype", "raw")

    dtype: TorchDType
    raw: np.ndarray | None  # flat, contiguous uint8
    byteorder: str          # "little" or "big"

    def __repr__(self) -> str:
        size = "unread" if self.raw is None else f"{getattr(self.raw, 'size', '?')} bytes"
        return f"Storage({self.dtype.name}, {size}, {self.byteorder})"

    def elements(self, dtype: TorchDType) -> np.ndarray:
        """The raw bytes viewed as elements of ``dtype`` in the file's order."""
        raw = self.raw
        # as_strided below trusts this layout: check it rather than assume.
        if not (isinstance(raw, np.ndarray) and raw.dtype == np.uint8
                and raw.ndim == 1 and raw.flags.c_contiguous):
            raise CheckpointError("storage bytes are not a flat byte buffer")
        if raw.size % dtype.itemsize:
            raise CheckpointError(
                f"storage of {raw.size} bytes is not a whole number of "
                f"{dtype.name} elements")
        # np.dtype("<f4") is canonicalised to the native float32 on little-
        # endian machines (newbyteorder would leave an explicit '<' behind).
        order = "<" if self.byteorder == "little" else ">"
        return raw.view(np.dtype(order + dtype.stored))


class MemoryBudget:
    """Caps the bytes a load may allocate for storages and tensors.

    Pickle memoisation makes a tiny file able to rebuild the same large
    storage as thousands of tensors (or one stride-0 tensor of any size);
    a legitimate checkpoint never needs much more memory than its own size.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.limit - self.used:
            raise CheckpointError(
                f"{what} would take {nbytes} bytes, beyond this file's memory "
                f"budget ({self.limit} bytes in all, {self.used} used); the "
                f"checkpoint is corrupt or a memory bomb")
        self.used += nbytes


# ---------------------------------------------------------------------------
# Stand-ins for pickled objects of classes we will not import
# ---------------------------------------------------------------------------

class PickledObject:
    """Inert stand-in for an instance of a class named in the pickle.

    Creating one calls nothing but ``object.__new__``; it only records what
    pickle hands it: constructor arguments (NEWOBJ/REDUCE), the BUILD state
    (``__setstate__``), and items (SETITEMS/APPENDS).  The original class's
    dotted name is ``qualified_name``.  For an ``nn.Module`` the state is its
    ``__dict__``, so ``attributes["_parameters"]`` etc. are readable.
    """

    qualified_name: ClassVar[str] = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        self = object.__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.items: dict[Any, Any] = {}
        self.list_items: list[Any] = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # REDUCE calls cls(*args): __new__ has recorded everything already.
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # dict and list subclasses are rebuilt with SETITEMS / APPENDS.
    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    @property
    def attributes(self) -> dict[str, Any]:
        """The instance ``__dict__`` the BUILD state describes (empty if none).

        pickle's default state is a dict, or ``(dict_or_None, slots_dict)``.
        """
        state = self.state
        if isinstance(state, dict):
            return state
        if isinstance(state, tuple) and len(state) == 2:
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            return merged
        return {}

    @property
    def is_module(self) -> bool:
        """Looks like a pickled ``torch.nn.Module``."""
        attrs = self.attributes
        return isinstance(attrs.get("_parameters"), dict) and isinstance(
            attrs.get("_modules"), dict)

    def __repr__(self) -> str:
        return f"<PickledObject {self.qualified_name}>"


# ---------------------------------------------------------------------------
# The unpickler
# ---------------------------------------------------------------------------

# Top-level modules that never hold a user's model class.  Their globals are
# refused outright (not stood in for), so that os.system, builtins.eval,
# subprocess.Popen, numpy functions, ... fail loudly and early.
# (sys.stdlib_module_names is Python >= 3.10; before that, the usual suspects.)
_STDLIB_MODULES = getattr(sys, "stdlib_module_names", None) or {
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib",
    "pickle", "_pickle", "marshal", "io", "_io", "socket", "runpy", "code", "codeop",
    "types", "functools", "operator", "ctypes", "codecs", "_codecs", "webbrowser",
    "pty", "multiprocessing", "asyncio", "signal", "threading", "_thread", "tempfile",
    "pathlib", "glob", "zipfile", "tarfile", "collections", "copyreg", "inspect",
    "pdb", "timeit", "trace", "profile", "cProfile", "platform", "urllib", "http",
    "ftplib", "smtplib", "telnetlib", "xmlrpc", "sqlite3", "logging", "configparser",
    "argparse", "json", "ast", "dis", "gc", "weakref", "atexit", "site", "zipimport",
}
_NEVER_STAND_IN = set(_STDLIB_MODULES) | {
    "__builtin__", "copy_reg", "cPickle", "commands",  # Python 2 names
    "numpy", "scipy", "pandas", "dill", "joblib", "cloudpickle",
}
# Harmless stdlib classes that commonly sit in training checkpoints.
_STDLIB_STAND_INS = {"argparse.Namespace"}
# Torch classes that may appear as pickled objects: nn.Module subclasses.
_TORCH_STAND_IN_PREFIXES = ("torch.nn.", "torch.ao.nn.")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

# Tensor kinds torch can save but this reader does not rebuild.
_UNSUPPORTED_TORCH_GLOBALS = {
    "torch._utils._rebuild_sparse_tensor": "sparse tensors",
    "torch._utils._rebuild_sparse_csr_tensor": "sparse tensors",
    "torch.serialization._get_layout": "sparse tensors",
    "torch._utils._rebuild_qtensor": "quantized tensors",
    "torch._utils._rebuild_nested_tensor": "nested tensors",
    "torch._utils._rebuild_wrapper_subclass": "tensor subclasses",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta tensors",
    "torch._utils._rebuild_device_tensor_from_numpy": "XLA/device tensors",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "device tensors",
    "torch._utils._rebuild_xla_tensor": "XLA tensors",
    "torch._utils._rebuild_mlc_tensor": "MLC tensors",
    "torch.ScriptObject": "quantized packed weights (convert the float model instead)",
}


# torch element types this reader does not convert (float8, quantized, ...).
_UNSUPPORTED_TORCH_DTYPE = re.compile(
    r"torch\.(float8_\w+|float4_\w+|complex32|chalf|bits\w+|q(u)?int\w+|u?int[1-7]"
    r"|Q(U)?Int\w*Storage|ComplexHalfStorage|Float8\w*Storage)")


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


def _torch_size(values: Any = ()) -> tuple:
    if not isinstance(values, (tuple, list)):
        raise CheckpointError("torch.Size expects a tuple of ints")
    return tuple(values)


def _torch_device(kind: Any, index: Any = None) -> str:
    # torch.device('cuda', 0) pickles as REDUCE(torch.device, ('cuda', 0)).
    # Devices mean nothing here (everything lands on the CPU); keep the name.
    return str(kind) if index is None else f"{kind}:{index}"


def _codecs_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles spell ``bytes`` as _codecs.encode(str, 'latin1').
    # Only plain text encodings: no codec lookup beyond these.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafeCheckpointError(
            f"refusing _codecs.encode with {type(text).__name__!s} and "
            f"encoding {encoding!r}")
    return text.encode(encoding, errors="strict")


def _bytearray(source: Any = b"", encoding: Any = None) -> bytearray:
    # bytearray(<int>) would allocate that many zero bytes: a memory bomb.
    if isinstance(source, str):
        return bytearray(_codecs_encode(source, encoding or "utf-8"))
    if isinstance(source, (bytes, bytearray, list, tuple)):
        return bytearray(source)
    raise CheckpointError("bytearray from a non-bytes value is not allowed")


class _AllowedCallable(_Sealed):
    """A function or class the pickle may call, sealed against BUILD.

    ``rebuilds_tensor`` marks torch's tensor rebuild functions, the only
    callables ``_rebuild_from_type_v2`` may forward to.
    """

    __slots__ = ("_function", "qualified_name", "rebuilds_tensor")

    def __init__(self, qualified_name: str, function: Callable[..., Any],
                 rebuilds_tensor: bool = False) -> None:
        object.__setattr__(self, "qualified_name", qualified_name)
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "rebuilds_tensor", rebuilds_tensor)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to modify {self!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<allowed {self.qualified_name}>"


_SAFE_CALLABLES: dict[str, Callable[..., Any]] = {
    "collections.OrderedDict": _ordered_dict,
    "collections.Counter": collections.Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.slice": slice,
    "builtins.complex": complex,
    "builtins.bytearray": _bytearray,
    "_codecs.encode": _codecs_encode,
    "torch.Size": _torch_size,
    "torch.device": _torch_device,
}


def _storage_types() -> dict[str, StorageType]:
    types: dict[str, StorageType] = {}
    for dtype in _DTYPES:
        if dtype.storage_class:
            # Old CUDA checkpoints name torch.cuda.FloatStorage; the data is
            # the same, only the device differs.
            for module in ("torch", "torch.cuda"):
                name = f"{module}.{dtype.storage_class}"
                types[name] = StorageType(name, dtype)
    for name in ("torch.UntypedStorage", "torch.storage.UntypedStorage",
                 "torch.ByteStorage"):
        types.setdefault(name, StorageType(name, None if "Untyped" in name else _UINT8))
    return types


_STORAGE_TYPES = _storage_types()


def _dtype_globals() -> dict[str, TorchDType]:
    names = {f"torch.{name}": dtype for name, dtype in _DTYPE_BY_NAME.items()}
    names.update({f"torch.{alias}": _DTYPE_BY_NAME[canonical]
                  for alias, canonical in _DTYPE_ALIASES.items()})
    return names


_DTYPE_GLOBALS = _dtype_globals()


def _normalize_global(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names to Python 3 the way pickle itself does
    (``__builtin__.set`` -> ``builtins.set``; torch writes protocol 2)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _may_stand_in(module: str, name: str) -> bool:
    """Whether ``module.name`` may be replaced by an inert class stand-in.

    The stand-in itself is harmless whatever the name; this filter exists so
    that functions and stdlib/torch internals fail with a clear message
    instead of turning into an odd object.  Only class-like names (last part
    capitalised) outside the stdlib, numpy and torch internals qualify.
    """
    qualified = f"{module}.{name}"
    if qualified in _STDLIB_STAND_INS:
        return True
    if not (_DOTTED_NAME.fullmatch(module) and _DOTTED_NAME.fullmatch(name)):
        return False
    if not name.rsplit(".", 1)[-1][:1].isupper():
        return False
    top = module.split(".", 1)[0]
    if top in _NEVER_STAND_IN:
        return False
    if top == "torch":
        return qualified.startswith(_TORCH_STAND_IN_PREFIXES)
    return True


def _as_int(value: Any, what: str, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{what} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise CheckpointError(f"{what} must be >= {minimum}, got {value}")
    return value


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise CheckpointError(f"tensor {what} must be a tuple, got {type(value).__name__}")
    return tuple(_as_int(v, f"tensor {what} entry") for v in value)


# NumPy refuses more dimensions than this (64 in NumPy 2, 32 before).
_MAX_NDIM = 32
# Each distinct class name costs a new type object: cap them per file.
_MAX_STAND_IN_CLASSES = 10_000


def _shorten(text: str, limit: int = 200) -> str:
    """Names come from the file: keep error messages readable."""
    return text if len(text) <= limit else text[:limit] + "..."


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch checkpoint pickle, allowing only tensor/container globals.

    ``load_storage`` turns a parsed persistent id into a ``Storage`` (the
    container reader knows where the bytes are).  ``budget`` caps the memory
    spent on tensors.  Tensors come back as NumPy arrays.
    """

    def __init__(self, file: Any, load_storage: Callable[[StorageRef], Storage],
                 budget: MemoryBudget) -> None:
        super().__init__(file)
        self._file = file
        self._load_storage = load_storage
        self._budget = budget
        self._stand_in_classes: dict[str, type[PickledObject]] = {}
        # The rebuild methods are reached through a weak reference: the C
        # unpickler's stack and memo, which the garbage collector cannot see,
        # hold them after a failed load, and a strong reference back to this
        # unpickler (and so to the file it reads) would never be freed.
        rebuilders = {
            "torch._utils._rebuild_tensor": _weak_method(self, "_rebuild_tensor"),
            "torch._utils._rebuild_tensor_v2": _weak_method(self, "_rebuild_tensor_v2"),
            "torch._utils._rebuild_tensor_v3": _weak_method(self, "_rebuild_tensor_v3"),
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
        }
        self._callables = {
            name: _AllowedCallable(name, function, rebuilds_tensor=True)
            for name, function in rebuilders.items()}
        self._callables["torch._tensor._rebuild_from_type_v2"] = _AllowedCallable(
            "torch._tensor._rebuild_from_type_v2", _weak_method(self, "_rebuild_from_type_v2"))
        self._callables.update(
            (name, _AllowedCallable(name, function))
            for name, function in _SAFE_CALLABLES.items())

    def load(self) -> Any:
        """Check the opcode stream (see ``check_opcodes``), then unpickle."""
        start = self._file.tell()
        check_opcodes(self._file)
        self._file.seek(start)
        try:
            return super().load()
        finally:
            self.memo = {}  # what the file built, freed now rather than with the unpickler

    # -- globals ------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        raw_name = f"{module}.{name}"
        module, name = _normalize_global(module, name)
        qualified = f"{module}.{name}"
        # The storage class check comes first: torch does the same, and
        # the names are unambiguous.
        if qualified in _STORAGE_TYPES:
            return _STORAGE_TYPES[qualified]
        if qualified in self._callables:
            return self._callables[qualified]
        if qualified in _DTYPE_GLOBALS:
            return _DTYPE_GLOBALS[qualified]
        if _UNSUPPORTED_TORCH_DTYPE.fullmatch(qualified):
            raise CheckpointError(
                f"the checkpoint holds tensors of type {qualified}, which this "
                f"reader does not support")
        if qualified in _UNSUPPORTED_TORCH_GLOBALS:
            raise CheckpointError(
                f"the checkpoint holds {_UNSUPPORTED_TORCH_GLOBALS[qualified]} "
                f"({qualified}), which this reader does not support")
        if qualified in ("torch.Tensor", "torch.nn.parameter.Parameter",
                         "torch.nn.Parameter") or _may_stand_in(module, name):
            return self._stand_in_class(qualified)
        shown = qualified if raw_name == qualified else f"{raw_name} (= {qualified})"
        shown = _shorten(shown)
        raise UnsafeCheckpointError(
            f"refusing to load global '{shown}': it is not on the allow-list "
            f"of tensor and container types, and unpickling it could run "
            f"arbitrary code")

    def _stand_in_class(self, qualified: str) -> type[PickledObject]:
        cls = self._stand_in_classes.get(qualified)
        if cls is None:
            if len(self._stand_in_classes) >= _MAX_STAND_IN_CLASSES:
                raise CheckpointError(
                    f"the pickle names more than {_MAX_STAND_IN_CLASSES} classes")
            short = qualified.rsplit(".", 1)[-1]
            cls = type(short, (PickledObject,), {
                "qualified_name": qualified, "__module__": __name__,
                "__qualname__": f"PickledObject[{qualified}]"})
            self._stand_in_classes[qualified] = cls
        return cls

    # -- storages -----------------------------------------------------------

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unexpected persistent id {type(pid).__name__}")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) == 4:
            # Legacy whole-module pickles: ('module', cls, source_file, source).
            cls = pid[1]
            if not (isinstance(cls, type) and issubclass(cls, PickledObject)):
                raise CheckpointError("'module' persistent id without a class")
            return cls
        if kind != "storage" or len(pid) not in (5, 6):
            raise CheckpointError(f"unknown persistent id kind {kind!r}")
        return self._load_storage(_parse_storage_pid(pid))

    # -- tensors ------------------------------------------------------------

    def _rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any,
                        stride: Any) -> np.ndarray | None:
        return self._tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any,
                           stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None
                           ) -> np.ndarray | None:
        return self._tensor(storage, storage_offset, size, stride, metadata=metadata)

    def _rebuild_tensor_v3(self, storage: Any, storage_offset: Any, size: Any,
                           stride: Any, requires_grad: Any, backward_hooks: Any,
                           dtype: Any, metadata: Any = None) -> np.ndarray | None:
        if not isinstance(dtype, TorchDType):
            raise CheckpointError(f"unsupported tensor dtype {dtype!r}")
        return self._tensor(storage, storage_offset, size, stride, dtype=dtype,
                            metadata=metadata)

    def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any,
                              state: Any) -> Any:
        # Tensors with Python attributes / Parameter subclasses: rebuild the
        # plain tensor and drop the extras.  ``func`` must be one of ours.
        rebuilds = isinstance(func, _AllowedCallable) and func.rebuilds_tensor
        if not rebuilds or not isinstance(args, tuple):
            raise UnsafeCheckpointError(
                "_rebuild_from_type_v2 with a function that is not a tensor rebuild")
        return func(*args)

    def _tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any,
                dtype: TorchDType | None = None, metadata: Any = None
                ) -> np.ndarray | None:
        if not isinstance(storage, Storage):
            raise CheckpointError(
                f"tensor storage is a {type(storage).__name__}, not a storage")
        dtype = dtype or storage.dtype
        offset = _as_int(storage_offset, "tensor storage offset")
        shape = _as_int_tuple(size, "size")
        strides = _as_int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise CheckpointError(f"tensor size {shape} and stride {strides} differ in length")
        if len(shape) > _MAX_NDIM:
            raise CheckpointError(f"tensor has {len(shape)} dimensions (max {_MAX_NDIM})")
        if storage.raw is None:
            return None  # structure-only pass over a legacy file

        numel = math.prod(shape)
        out_dtype = np.dtype(dtype.loaded)
        self._budget.charge(numel * out_dtype.itemsize, f"tensor of shape {shape}")
        if numel == 0:
            return np.zeros(shape, out_dtype)
        elements = storage.elements(dtype)
        view = strided_view(elements, offset, shape, strides, lambda last: CheckpointError(
            f"tensor (offset {offset}, size {shape}, stride {strides}) reaches "
            f"element {last} of a storage holding {elements.size} {dtype.name} elements"))
        return _apply_metadata(dtype.to_numpy(view), metadata)


def strided_view(elements: np.ndarray, offset: int, shape: tuple, strides: tuple,
                 error: Callable[[int], Exception]) -> np.ndarray:
    """The read-only view of a tensor (element offset, sizes, strides: none negative)
    over a storage's elements; error(last element) is raised when it reaches past them."""
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
    if last >= elements.size:
        raise error(last)
    item = elements.itemsize
    # A length-1 dimension never steps, whatever its stride says; zero it so
    # that a huge (legal) stride cannot overflow NumPy's intp.
    byte_strides = tuple(0 if n == 1 else s * item for n, s in zip(shape, strides))
    return as_strided(elements[offset:], shape=shape, strides=byte_strides, writeable=False)


def _weak_method(obj: Any, name: str) -> Callable[..., Any]:
    """obj.name(...), without keeping obj alive."""
    ref = weakref.ref(obj)

    def call(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        if target is None:
            raise CheckpointError("a tensor rebuild outlived its unpickler")
        return getattr(target, name)(*args, **kwargs)

    return call


def check_opcodes(file: Any) -> None:
    """Walk one pickle's opcodes, without running them, up to its STOP.

    The C unpickler trusts two things a damaged or hostile file can abuse:
    a memo index (``LONG_BINPUT 2**31`` makes it allocate, and zero, a
    memo table of 2**32 pointers) and a length prefix (``BYTEARRAY8 2**56``
    makes it allocate that much before finding the data missing).
    ``pickletools.genops`` only parses, reading lengths as it goes, so
    truncation and unknown opcodes surface here, cheaply.  The caller
    rewinds the file afterwards.
    """
    opcode_count = 0
    highest_memo_index = -1
    try:
        for opcode, argument, _position in pickletools.genops(file):
            opcode_count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                highest_memo_index = max(highest_memo_index, argument)
    except Exception as exc:  # noqa: BLE001 - genops raises several types
        raise CheckpointError(
            f"corrupt or truncated pickle ({type(exc).__name__}: {exc})") from exc
    # pickle numbers memo slots 0, 1, 2, ...: never more slots than opcodes.
    if highest_memo_index >= opcode_count:
        raise CheckpointError(
            f"pickle memo index {highest_memo_index} is out of proportion to "
            f"its {opcode_count} opcodes")


def _rebuild_parameter(data: Any, requires_grad: Any = False,
                       backward_hooks: Any = None) -> Any:
    # An nn.Parameter is just its tensor here.
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: Any = False,
                                  backward_hooks: Any = None, state: Any = None) -> Any:
    return data


def _apply_metadata(array: np.ndarray, metadata: Any) -> np.ndarray:
    """Honour the lazy 'neg'/'conj' bits torch records for such views."""
    if not metadata:
        return array
    if not isinstance(metadata, dict):
        raise CheckpointError("tensor metadata must be a dict")
    if metadata.get("neg"):
        array = np.negative(array)
    if metadata.get("conj"):
        array = np.conj(array)
    return array


def _parse_storage_pid(pid: tuple) -> StorageRef:
    """``('storage', storage_type, key, location, numel[, view_metadata])``."""
    storage_type, key, _location, numel = pid[1:5]
    view_metadata = pid[5] if len(pid) == 6 else None
    if not isinstance(storage_type, StorageType):
        raise CheckpointError(f"storage type {storage_type!r} is not a storage class")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str):
        raise CheckpointError(f"storage key must be a string, got {type(key).__name__}")
    numel = _as_int(numel, f"element count of storage {key!r}")
    view = None
    if view_metadata is not None:
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
            raise CheckpointError(f"bad view metadata for storage {key!r}")
        view_key, view_offset, view_size = view_metadata
        if isinstance(view_key, bytes):
            view_key = view_key.decode("ascii", "replace")
        view = (str(view_key), _as_int(view_offset, "storage view offset"),
                _as_int(view_size, "storage view size"))
    return StorageRef(key=key, dtype=storage_type.element_dtype, numel=numel, view=view)
