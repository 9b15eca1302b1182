"""TensorFlow tensor bundles (the variables of checkpoints and SavedModels),
read without TensorFlow.

A bundle with prefix P is ``P.index`` plus data shards
``P.data-00000-of-0000N``.  The index is a LevelDB-format table (sorted
key/value entries in blocks, an index block of block handles, a 48-byte
footer ending in a magic number) whose keys are variable names and whose
values are ``BundleEntryProto`` messages (dtype, shape, shard, offset, size,
masked crc32c); the empty key holds the ``BundleHeaderProto`` (number of
shards, endianness).  Tensor bytes are raw, in the header's byte order.

Everything the files claim is checked against what is there before it is
used: block handles against the index size, tensor ranges against the shard's
size, byte counts against shape x dtype; checksums of blocks and tensors are
verified.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

from ..errors import FormatError
from ._protobuf import ProtobufError, decode, read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_BYTES = 5  # compression type, masked crc32c
MAX_INDEX_BYTES = 1 << 30
MAX_SHARDS = 99999  # the shard file names carry five digits
MAX_RANK = 32
MAX_KEY_BYTES = 1 << 16
HEADER_KEY = ""
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

# tensorflow.DataType -> (numpy type, TF name); bfloat16 is widened on read
DT_STRING = 7
DT_BFLOAT16 = 14
DTYPES = {1: ("f4", "float32"), 2: ("f8", "float64"), 3: ("i4", "int32"), 4: ("u1", "uint8"),
          5: ("i2", "int16"), 6: ("i1", "int8"), 9: ("i8", "int64"), 10: ("?", "bool"),
          DT_BFLOAT16: ("u2", "bfloat16"), 17: ("u2", "uint16"), 19: ("f2", "float16"),
          22: ("u4", "uint32"), 23: ("u8", "uint64")}
DTYPE_NAMES = {7: "string", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}

_SHAPE = {2: ("dim", {1: ("size", "int", False), 2: ("name", "string", False)}, True),
          3: ("unknown_rank", "bool", False)}
_SLICE = {1: ("extent", {1: ("start", "int", False), 2: ("length", "int", False)}, True)}
BUNDLE_ENTRY = {1: ("dtype", "enum", False), 2: ("shape", _SHAPE, False),
                3: ("shard_id", "int", False), 4: ("offset", "int", False),
                5: ("size", "int", False), 6: ("crc32c", "fixed32", False),
                7: ("slices", _SLICE, True)}
_VERSION = {1: ("producer", "int", False), 2: ("min_consumer", "int", False),
            3: ("bad_consumers", "int", True)}
BUNDLE_HEADER = {1: ("num_shards", "int", False), 2: ("endianness", "enum", False),
                 3: ("version", _VERSION, False)}


class TensorBundleError(FormatError):
    """A TensorFlow checkpoint / SavedModel variables file that cannot be read."""


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def refuse_lfs_pointer(path, head: bytes):
    """Files of a model kept in Git LFS are small text pointers until pulled."""
    if head.startswith(LFS_POINTER):
        raise TensorBundleError(f"{path}: a Git LFS pointer, not the file itself: run `git lfs "
                                "pull` in the repository (or download the file itself)")


# -- crc32c (Castagnoli), as LevelDB and TensorFlow use it -------------------------

_CRC_POLY = 0x82F63B78  # reflected
_CRC_LANE_BYTES = 1024


def _crc_tables() -> np.ndarray:
    """Slicing-by-4 tables: T[k][b] is the crc of byte b followed by k zero bytes."""
    tables = np.zeros((4, 256), np.uint32)
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        tables[0, b] = c
    for k in range(1, 4):
        tables[k] = (tables[k - 1] >> 8) ^ tables[0][tables[k - 1] & 0xFF]
    return tables


_CRC_TABLES = _crc_tables()
_CRC_TABLE0 = [int(v) for v in _CRC_TABLES[0]]


def _crc_bytes(state: int, data) -> int:
    table = _CRC_TABLE0
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def _gf2_apply(columns, vector: int) -> int:
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= int(columns[i])
        vector >>= 1
        i += 1
    return out


@functools.lru_cache(maxsize=64)
def _zeros_operator(log2_bytes: int) -> tuple:
    """The linear map 'append 2**log2_bytes zero bytes' on a crc register,
    as its 32 columns (images of the unit vectors)."""
    if log2_bytes == 0:
        return tuple(_crc_bytes(1 << i, b"\0") for i in range(32))
    half = _zeros_operator(log2_bytes - 1)
    return tuple(_gf2_apply(half, half[i]) for i in range(32))


@functools.lru_cache(maxsize=64)
def _zeros_tables(log2_bytes: int) -> np.ndarray:
    """The same map as 4 byte tables, to apply it to many registers at once."""
    columns = np.array(_zeros_operator(log2_bytes), np.uint32)
    bits = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)
    tables = np.zeros((4, 256), np.uint32)
    for k in range(4):
        tables[k] = np.bitwise_xor.reduce(
            np.where(bits, columns[None, 8 * k:8 * k + 8], np.uint32(0)), axis=1)
    return tables


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of data, continuing from crc (the CRC-32C of what came before).

    Large inputs run as 1 KiB lanes side by side in NumPy (slicing-by-4),
    whose registers are then merged pairwise: crc is linear, so
    crc(A + B) = zeros_|B|(crc(A)) ^ crc0(B).  ~300 MB/s, where plain
    Python manages ~10 MB/s."""
    view = memoryview(data).cast("B")
    lanes = len(view) // _CRC_LANE_BYTES
    state = crc ^ 0xFFFFFFFF
    done = 0
    if lanes >= 8:
        words = np.frombuffer(view[:lanes * _CRC_LANE_BYTES], dtype="<u4").reshape(lanes, -1)
        registers = np.zeros(lanes, np.uint32)
        registers[0] = state  # the initial value belongs to the first lane only
        t0, t1, t2, t3 = _CRC_TABLES
        for j in range(words.shape[1]):
            c = registers ^ words[:, j]
            registers = t3[c & 0xFF] ^ t2[(c >> 8) & 0xFF] ^ t1[(c >> 16) & 0xFF] ^ t0[c >> 24]
        width = 1 << (lanes - 1).bit_length()  # leading all-zero lanes leave the crc unchanged
        registers = np.concatenate([np.zeros(width - lanes, np.uint32), registers])
        level = _CRC_LANE_BYTES.bit_length() - 1
        while registers.size > 1:
            t = _zeros_tables(level)
            a = registers[0::2]
            registers = (t[0][a & 0xFF] ^ t[1][(a >> 8) & 0xFF] ^ t[2][(a >> 16) & 0xFF]
                         ^ t[3][a >> 24] ^ registers[1::2])
            level += 1
        state = int(registers[0])
        done = lanes * _CRC_LANE_BYTES
    return _crc_bytes(state, view[done:]) ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """LevelDB/TF store crc32c values masked: ((c >> 15 | c << 17) + 0xa282ead8)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# -- the LevelDB-format table of the .index file -----------------------------------


def _block_handle(data, pos: int, end: int, what: str) -> tuple:
    offset, pos = read_varint(data, pos, end)
    size, pos = read_varint(data, pos, end)
    return (offset, size), pos


def _block(data: memoryview, handle: tuple, what: str) -> memoryview:
    """The contents of one block, after checking its range, type and checksum."""
    offset, size = handle
    limit = len(data) - FOOTER_BYTES
    if offset + size + BLOCK_TRAILER_BYTES > limit:
        raise TensorBundleError(f"{what} [{offset}, +{size}) lies outside the {limit} bytes "
                                "before the footer (truncated?)")
    kind = data[offset + size]
    if kind == 1:
        raise TensorBundleError(f"{what} is snappy-compressed; gru_infer reads uncompressed "
                                "tables only (TensorFlow writes them uncompressed)")
    if kind != 0:
        raise TensorBundleError(f"{what} has unknown compression type {kind}")
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if crc32c(data[offset:offset + size + 1]) != unmask_crc(stored):
        raise TensorBundleError(f"{what}: checksum mismatch (corrupt file)")
    return data[offset:offset + size]


def _block_entries(block: memoryview, what: str, budget: list) -> list:
    """[(key, value)] of a block: prefix-compressed keys, then the restart array.

    A key shares a prefix with the one before, so a few bytes can stand for a
    long key: budget[0] is how many key bytes may still be made, and no key
    may be longer than MAX_KEY_BYTES."""
    if len(block) < 4:
        raise TensorBundleError(f"{what}: {len(block)} bytes, too short for a block")
    restarts = int.from_bytes(block[-4:], "little")
    if restarts < 1 or 4 + 4 * restarts > len(block):
        raise TensorBundleError(f"{what}: {restarts} restart points do not fit in "
                                f"{len(block)} bytes")
    end = len(block) - 4 - 4 * restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = read_varint(block, pos, end)
        unshared, pos = read_varint(block, pos, end)
        value_length, pos = read_varint(block, pos, end)
        if shared > len(key) or unshared + value_length > end - pos:
            raise TensorBundleError(f"{what}: an entry at byte {pos} overruns the block")
        budget[0] -= shared + unshared
        if shared + unshared > MAX_KEY_BYTES or budget[0] < 0:
            raise TensorBundleError(f"{what}: keys longer than a checkpoint's variable names "
                                    f"can be (an entry at byte {pos}: {shared + unshared} bytes)")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        entries.append((key, block[pos:pos + value_length]))
        pos += value_length
    return entries


def read_table(data: bytes, path) -> list:
    """[(key bytes, value memoryview)] of every entry of a LevelDB-format table."""
    view = memoryview(data)
    if len(view) < FOOTER_BYTES:
        raise TensorBundleError(f"{path}: {len(view)} bytes, too short for a TF checkpoint "
                                "index (truncated?)")
    if int.from_bytes(view[-8:], "little") != TABLE_MAGIC:
        raise TensorBundleError(f"{path}: no table magic number at the end: not a TensorFlow "
                                "checkpoint index (or truncated)")
    try:
        footer = len(view) - FOOTER_BYTES
        _metaindex, pos = _block_handle(view, footer, footer + 40, "metaindex handle")
        index_handle, _ = _block_handle(view, pos, footer + 40, "index handle")
        budget = [8 * len(view) + (1 << 20)]
        index = _block_entries(_block(view, index_handle, f"{path}: index block"),
                               f"{path}: index block", budget)
        entries, previous = [], None
        for number, (_, handle_bytes) in enumerate(index):
            handle, _ = _block_handle(handle_bytes, 0, len(handle_bytes), "block handle")
            what = f"{path}: data block {number}"
            for key, value in _block_entries(_block(view, handle, what), what, budget):
                if previous is not None and key <= previous:
                    raise TensorBundleError(f"{path}: keys out of order or repeated at "
                                            f"{key[:80]!r}")
                previous = key
                entries.append((key, value))
    except ProtobufError as error:  # a varint running past its bytes
        raise TensorBundleError(f"{path}: malformed table ({error})") from None
    return entries


# -- the bundle -------------------------------------------------------------------


def _shape(entry: dict, key: str, path) -> tuple:
    shape = entry["shape"]
    if shape.get("unknown_rank"):
        raise TensorBundleError(f"{path}: variable {key!r} has an unknown rank")
    dims = tuple(d["size"] for d in shape.get("dim", []))
    if len(dims) > MAX_RANK:
        raise TensorBundleError(f"{path}: variable {key!r} has {len(dims)} dimensions; at most "
                                f"{MAX_RANK} are supported")
    if any(d < 0 for d in dims):
        raise TensorBundleError(f"{path}: variable {key!r} has shape {dims} with a negative "
                                "dimension")
    return dims


class TensorBundle:
    """The variables of one checkpoint prefix: names, dtypes, shapes; values on demand."""

    def __init__(self, prefix, what: str = "TF checkpoint"):
        self.prefix = os.fspath(prefix)
        self.index_path = self.prefix + ".index"
        self.what = what
        try:
            size = os.path.getsize(self.index_path)
            if size > MAX_INDEX_BYTES:
                raise TensorBundleError(f"{self.index_path}: {size} bytes; a checkpoint index "
                                        f"over {MAX_INDEX_BYTES} bytes is not supported")
            with open(self.index_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise
        except OSError as error:
            raise TensorBundleError(f"{self.index_path}: cannot read: "
                                    f"{error.strerror or error}") from None
        refuse_lfs_pointer(self.index_path, data[:len(LFS_POINTER)])
        self.entries = {}
        header = None
        for key_bytes, value in read_table(data, self.index_path):
            try:
                key = key_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise TensorBundleError(f"{self.index_path}: a key is not UTF-8 text: "
                                        f"{key_bytes[:80]!r}") from None
            try:
                if key == HEADER_KEY:
                    header = decode(value, BUNDLE_HEADER)
                else:
                    self.entries[key] = decode(value, BUNDLE_ENTRY)
            except ProtobufError as error:
                raise TensorBundleError(f"{self.index_path}: entry {key!r} is malformed "
                                        f"({error})") from None
        if header is None:
            raise TensorBundleError(f"{self.index_path}: no header entry: not a TensorFlow "
                                    "tensor bundle index")
        self.num_shards = header["num_shards"]
        if not 1 <= self.num_shards <= MAX_SHARDS:
            raise TensorBundleError(f"{self.index_path}: header says {self.num_shards} data "
                                    f"shards; expected 1 to {MAX_SHARDS}")
        if header["endianness"] not in (0, 1):
            raise TensorBundleError(f"{self.index_path}: unknown endianness "
                                    f"{header['endianness']}")
        self.byte_order = "<" if header["endianness"] == 0 else ">"
        used = set()
        for key, entry in self.entries.items():
            if entry["slices"]:
                continue  # a partitioned variable: its slices are entries of their own
            if not 0 <= entry["shard_id"] < self.num_shards:
                raise TensorBundleError(f"{self.index_path}: variable {key!r} is in shard "
                                        f"{entry['shard_id']} of {self.num_shards}")
            used.add(entry["shard_id"])
        missing = [self.shard_path(i) for i in sorted(used)
                   if not os.path.isfile(self.shard_path(i))]
        for shard in sorted(used):  # a pointer is ~130 bytes
            shard_path = self.shard_path(shard)
            if os.path.isfile(shard_path) and os.path.getsize(shard_path) < 1024:
                with open(shard_path, "rb") as f:
                    refuse_lfs_pointer(shard_path, f.read(len(LFS_POINTER)))
        if missing:
            names = ", ".join(os.path.basename(m) for m in missing)
            raise TensorBundleError(
                f"{self.index_path}: the data shard {names} is missing beside it: a "
                f"{what} is the .index file together with its .data-*-of-* files (this index "
                f"lists {len(self.entries)} variables); copy them all")

    def shard_path(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def describe(self, key: str) -> str:
        """'float32 (3, 6)' for messages."""
        entry = self.entries[key]
        name = DTYPES.get(entry["dtype"], (None, None))[1] or DTYPE_NAMES.get(
            entry["dtype"], f"dtype {entry['dtype']}")
        try:
            return f"{name} {_shape(entry, key, self.index_path)}"
        except TensorBundleError:
            return f"{name} (malformed shape)"

    def _entry(self, key: str) -> dict:
        entry = self.entries.get(key)
        if entry is None:
            raise TensorBundleError(f"{self.index_path}: no variable {key!r}")
        if entry["slices"]:
            raise TensorBundleError(f"{self.index_path}: variable {key!r} is partitioned into "
                                    f"{len(entry['slices'])} slices; gru_infer reads "
                                    "unpartitioned variables only")
        return entry

    def _bytes(self, key: str, entry: dict) -> bytes:
        """The entry's bytes from its shard, range-checked, checksum verified."""
        path = self.shard_path(entry["shard_id"])
        offset, size = entry["offset"], entry["size"]
        try:
            shard_size = os.path.getsize(path)
            if offset < 0 or size < 0 or offset + size > shard_size:
                raise TensorBundleError(f"{path}: variable {key!r} claims bytes [{offset}, "
                                        f"{offset + size}) of a {shard_size}-byte shard "
                                        "(truncated or corrupt)")
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except FileNotFoundError:
            raise TensorBundleError(f"{self.index_path}: the data shard {os.path.basename(path)}"
                                    " is missing") from None
        except OSError as error:
            raise TensorBundleError(f"{path}: cannot read: {error.strerror or error}") from None
        if len(data) != size:
            raise TensorBundleError(f"{path}: variable {key!r}: read {len(data)} of {size} bytes")
        return data

    def array(self, key: str) -> np.ndarray:
        """A numeric variable as an array (bfloat16 widened to float32)."""
        entry = self._entry(key)
        dims = _shape(entry, key, self.index_path)
        code = entry["dtype"]
        if code not in DTYPES:
            name = DTYPE_NAMES.get(code, f"dtype {code}")
            raise TensorBundleError(f"{self.index_path}: variable {key!r} has type {name}, "
                                    "not a numeric array")
        dtype = np.dtype(self.byte_order + DTYPES[code][0])
        expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
        if entry["size"] != expected:
            raise TensorBundleError(f"{self.index_path}: variable {key!r} of shape {dims} "
                                    f"({DTYPES[code][1]}) needs {expected} bytes; its entry "
                                    f"says {entry['size']}")
        data = self._bytes(key, entry)
        if crc32c(data) != unmask_crc(entry["crc32c"]):
            raise TensorBundleError(f"{self.shard_path(entry['shard_id'])}: variable {key!r}: "
                                    "checksum mismatch (corrupt data)")
        array = np.frombuffer(data, dtype=dtype).reshape(dims)
        array = array.astype(dtype.newbyteorder("="))  # a writable, native-order copy
        if code == DT_BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def strings(self, key: str) -> list:
        """A string variable's elements, as bytes."""
        entry = self._entry(key)
        dims = _shape(entry, key, self.index_path)
        if entry["dtype"] != DT_STRING:
            raise TensorBundleError(f"{self.index_path}: variable {key!r} is "
                                    f"{self.describe(key)}, not a string")
        count = math.prod(dims)
        if count > entry["size"]:  # every element takes at least one length byte
            raise TensorBundleError(f"{self.index_path}: string variable {key!r} of shape "
                                    f"{dims} does not fit in {entry['size']} bytes")
        data = self._bytes(key, entry)
        # [varint64 length] * count, masked crc32c of the lengths (each as a
        # little-endian uint32, or uint64 past 4 GiB), then the bytes.
        try:
            lengths, pos = [], 0
            for _ in range(count):
                length, pos = read_varint(data, pos, len(data))
                lengths.append(length)
        except ProtobufError as error:
            raise TensorBundleError(f"{self.index_path}: string variable {key!r}: {error}") \
                from None
        if pos + 4 + sum(lengths) != len(data):
            raise TensorBundleError(f"{self.index_path}: string variable {key!r}: lengths "
                                    f"{sum(lengths)} do not add up to its {len(data)} bytes")
        crc = 0
        for length in lengths:
            crc = crc32c(length.to_bytes(4 if length < 1 << 32 else 8, "little"), crc)
        if int.from_bytes(data[pos:pos + 4], "little") != mask_crc(crc):
            raise TensorBundleError(f"{self.index_path}: string variable {key!r}: checksum of "
                                    "the lengths does not match (corrupt data)")
        if crc32c(data[pos:], crc) != unmask_crc(entry["crc32c"]):
            raise TensorBundleError(f"{self.index_path}: string variable {key!r}: checksum "
                                    "mismatch (corrupt data)")
        out, pos = [], pos + 4
        for length in lengths:
            out.append(data[pos:pos + length])
            pos += length
        return out
