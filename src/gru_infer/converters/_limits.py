"""Bounds every reader applies before it allocates what a file merely claims.

A checkpoint is untrusted input: a length field, a zip member's declared size,
a dataset's shape or a JSON document's nesting can all claim far more than the
file holds.  The readers check such claims here, against the bytes present and
against limits no real GRU checkpoint comes near, and refuse with a
FormatError naming the file and the limit; errors of the libraries underneath
(zipfile, zlib, json) are wrapped, the original kept as __cause__.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

from ..errors import FormatError
from ..spec.file import MAX_JSON_DEPTH, json_depth

# JSON (a Keras config, metadata.json, a weights-only file's config); its
# nesting is bounded as the weight file's config is (MAX_JSON_DEPTH).
MAX_JSON_BYTES = 64 << 20
# Zip members: what one member may inflate to, in all and relative to its
# compressed size (float weights hardly compress; a bomb compresses 1000:1).
MAX_MEMBER_BYTES = 4 << 30
MAX_INFLATE_RATIO = 64
INFLATE_FLOOR_BYTES = 16 << 20
MAX_ZIP_MEMBERS = 100_000
# Arrays read from HDF5: a budget per file (what reading may allocate), as for
# PyTorch files (torch_file.MemoryBudget), and a sane rank.
BUDGET_PER_FILE_BYTE = 4
BUDGET_FLOOR_BYTES = 64 << 20
MAX_ARRAY_NDIM = 8
# Lists of names in HDF5 attributes (layer_names, weight_names) and their chunks.
MAX_NAMES = 100_000
MAX_ATTRIBUTE_CHUNKS = 10_000

_CHUNK = 1 << 20


def load_json(data, what: str, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH):
    """json.loads with a size and a nesting bound; FormatError(what: reason)."""
    if len(data) > max_bytes:
        raise FormatError(f"{what} is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(data)
    except RecursionError as error:
        raise FormatError(f"{what} nests deeper than {max_depth} levels") from error
    except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise FormatError(f"{what} is not valid JSON ({error})") from error
    if json_depth(value, max_depth + 1) > max_depth:
        raise FormatError(f"{what} nests deeper than {max_depth} levels")
    return value


def open_zip(path) -> zipfile.ZipFile:
    """A zip archive, its central directory checked; FormatError if damaged."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, UnicodeDecodeError, OverflowError) as error:
        raise FormatError(f"{os.fspath(path)}: a damaged zip file "
                          f"({type(error).__name__}: {error})") from error
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        archive.close()
        raise FormatError(f"{os.fspath(path)}: the zip file lists {len(infos)} members, over "
                          f"the limit of {MAX_ZIP_MEMBERS}")
    return archive


def member_limit(info: zipfile.ZipInfo, limit: int | None = None) -> int:
    """The most bytes a zip member may inflate to."""
    allowed = max(INFLATE_FLOOR_BYTES, MAX_INFLATE_RATIO * info.compress_size)
    return min(allowed, MAX_MEMBER_BYTES if limit is None else limit)


def read_zip_member(archive: zipfile.ZipFile, name: str, path, *, limit: int | None = None) -> bytes:
    """A member's bytes, inflated under a cap: its declared size is checked
    first, then what actually comes out (a member may lie about its size)."""
    where = f"{os.fspath(path)}: zip member {name!r}"
    try:
        info = archive.getinfo(name)
    except KeyError as error:
        raise FormatError(f"{where} is missing") from error
    cap = member_limit(info, limit)
    if info.file_size > cap:
        raise FormatError(f"{where} declares {info.file_size} bytes inflated from "
                          f"{info.compress_size}, over the limit of {cap} bytes")
    chunks, total = [], 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(min(_CHUNK, info.file_size + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > info.file_size:
                    raise FormatError(f"{where} inflates past its declared size of "
                                      f"{info.file_size} bytes")
                chunks.append(chunk)
    except FormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OverflowError, UnicodeDecodeError) as error:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method
        raise FormatError(f"{where} cannot be read ({type(error).__name__}: {error})") from error
    if total != info.file_size:
        raise FormatError(f"{where} is truncated: {total} of {info.file_size} bytes")
    return b"".join(chunks)


class ArrayBudget:
    """The bytes a file's arrays may take once read: BUDGET_PER_FILE_BYTE times
    the file's size plus a floor.  Charged from each array's shape and dtype
    before it is read, so a dataset that claims 3e8 values in a 1 MB file is
    refused, not read."""

    def __init__(self, file_bytes: int, path) -> None:
        self.limit = BUDGET_FLOOR_BYTES + BUDGET_PER_FILE_BYTE * max(int(file_bytes), 0)
        self.used = 0
        self.path = path

    def charge(self, shape, itemsize: int, what: str) -> None:
        if len(shape) > MAX_ARRAY_NDIM:
            raise FormatError(f"{os.fspath(self.path)}: {what} has {len(shape)} dimensions "
                              f"(at most {MAX_ARRAY_NDIM})")
        count = 1
        for n in shape:
            if n < 0:
                raise FormatError(f"{os.fspath(self.path)}: {what} has shape {tuple(shape)}")
            count *= int(n)
        nbytes = count * int(itemsize)
        if nbytes > self.limit - self.used:
            raise FormatError(f"{os.fspath(self.path)}: {what} of shape {tuple(shape)} would take "
                              f"{nbytes} bytes, beyond what this {self.limit // 2**20} MiB budget "
                              "for the file allows; the file is corrupt or hostile")
        self.used += nbytes
