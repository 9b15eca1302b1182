"""A small writer of TensorFlow tensor bundles and object graphs, for tests:
synthetic checkpoints in shapes TensorFlow writes rarely or never (several
shards, big-endian, bfloat16, partitioned variables, hostile claims).

Field numbers as in tensorflow/core/protobuf/tensor_bundle.proto and
trackable_object_graph.proto; the table is LevelDB's format."""

from __future__ import annotations

import os
import struct

import numpy as np

from gru_infer.converters.tf_bundle import TABLE_MAGIC, crc32c, mask_crc

TF_DTYPES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3,
             np.dtype("int64"): 9, np.dtype("float16"): 19, np.dtype("uint16"): 17}


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, data) -> bytes:
    data = data.encode() if isinstance(data, str) else bytes(data)
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<I", value)


def shape_proto(shape) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, d)) for d in shape)


def entry_proto(dtype: int, shape, shard: int, offset: int, size: int, crc: int,
                slices=()) -> bytes:
    out = field_varint(1, dtype) + field_bytes(2, shape_proto(shape))
    out += (field_varint(3, shard) if shard else b"") + (field_varint(4, offset) if offset else b"")
    out += field_varint(5, size) + field_fixed32(6, mask_crc(crc))
    for extents in slices:
        out += field_bytes(7, b"".join(field_bytes(1, field_varint(1, s) + field_varint(2, n))
                                       for s, n in extents))
    return out


def header_proto(num_shards: int, big_endian: bool = False) -> bytes:
    return field_varint(1, num_shards) + (field_varint(2, 1) if big_endian else b"") + \
        field_bytes(3, field_varint(1, 1))


def object_graph_proto(nodes) -> bytes:
    """nodes: [(children [(local name, node id)], checkpoint key or None)]."""
    out = b""
    for children, key in nodes:
        node = b"".join(field_bytes(1, field_varint(1, i) + field_bytes(2, name))
                        for name, i in children)
        if key is not None:
            node += field_bytes(2, field_bytes(1, "VARIABLE_VALUE") + field_bytes(2, key)
                                + field_bytes(3, key))
        out += field_bytes(1, node)
    return out


def _block(entries, restart_interval: int = 4) -> bytes:
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        previous = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts or [0]))
    return bytes(out)


def table(entries, entries_per_block: int = 3, compression: int = 0) -> bytes:
    """A LevelDB-format table of sorted (key, value) byte pairs."""
    out, index = bytearray(), []

    def add_block(contents):
        offset = len(out)
        trailer = bytes([compression])
        out.extend(contents + trailer + struct.pack("<I", mask_crc(crc32c(contents + trailer))))
        return varint(offset) + varint(len(contents))

    entries = sorted(entries)
    for start in range(0, len(entries), entries_per_block):
        chunk = entries[start:start + entries_per_block]
        index.append((chunk[-1][0], add_block(_block(chunk))))
    metaindex = add_block(_block([]))
    index_handle = add_block(_block(index, restart_interval=1))
    footer = (metaindex + index_handle).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    return bytes(out + footer)


def string_tensor_bytes(values) -> tuple:
    """(bytes, crc) of a DT_STRING tensor as TensorFlow writes it."""
    lengths = b"".join(varint(len(v)) for v in values)
    crc = 0
    for v in values:
        crc = crc32c(struct.pack("<I", len(v)), crc)
    checksum = struct.pack("<I", mask_crc(crc))
    crc = crc32c(checksum, crc)
    data = b"".join(values)
    return lengths + checksum + data, crc32c(data, crc)


def write_bundle(prefix, tensors: dict, *, num_shards: int = 1, big_endian: bool = False,
                 object_graph: bytes | None = None, extra_entries=(), compression: int = 0):
    """Write prefix.index and its shards; tensor i goes to shard i % num_shards."""
    prefix = os.fspath(prefix)
    shards = [bytearray() for _ in range(num_shards)]
    entries = [(b"", header_proto(num_shards, big_endian))]
    for i, (key, value) in enumerate(sorted(tensors.items())):
        shard = shards[i % num_shards]
        if isinstance(value, (bytes, list)):  # a string tensor
            values = [value] if isinstance(value, bytes) else value
            data, crc = string_tensor_bytes(values)
            dtype, shape = 7, (() if isinstance(value, bytes) else (len(values),))
        else:
            array = np.asarray(value)
            dtype, shape = TF_DTYPES[array.dtype], array.shape
            data = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
            crc = crc32c(data)
        entries.append((key.encode(), entry_proto(dtype, shape, i % num_shards, len(shard),
                                                  len(data), crc)))
        shard += data
    if object_graph is not None:
        data, crc = string_tensor_bytes([object_graph])
        entries.append((b"_CHECKPOINTABLE_OBJECT_GRAPH",
                        entry_proto(7, (), 0, len(shards[0]), len(data), crc)))
        shards[0] += data
    entries += list(extra_entries)
    with open(prefix + ".index", "wb") as f:
        f.write(table(entries, compression=compression))
    for i, shard in enumerate(shards):
        with open(f"{prefix}.data-{i:05d}-of-{num_shards:05d}", "wb") as f:
            f.write(shard)


def keras_checkpoint(prefix, layers: list, *, mode: str = "layer_with_weights",
                     under_model: bool = False, **options):
    """A Keras-style object-graph checkpoint: layers = [(child name path, {variable
    path: array})] e.g. ("gru", {"cell/kernel": k, ...}); mode picks the root
    child names: layer_with_weights-N, layer-N, or the given names."""
    nodes = [([], None)]
    tensors = {}

    def add(parent, name, key=None):
        nodes.append(([], key))
        nodes[parent][0].append((name, len(nodes) - 1))
        return len(nodes) - 1

    model = add(0, "model") if under_model else 0
    nodes[model][0].append(("root", 0))  # a reference back, as tf.function tracking writes
    for index, (name, variables) in enumerate(layers):
        child = {"layer_with_weights": f"layer_with_weights-{index}",
                 "layer": f"layer-{index}", "name": name}[mode]
        layer_node = add(model, child)
        for path, value in variables.items():
            node = layer_node
            parts = path.split("/")
            for part in parts[:-1]:
                found = dict(nodes[node][0]).get(part)
                node = found if found is not None else add(node, part)
            key = f"{child}/{path}/.ATTRIBUTES/VARIABLE_VALUE"
            add(node, parts[-1], key)
            tensors[key] = value
    write_bundle(prefix, tensors, object_graph=object_graph_proto(nodes), **options)
