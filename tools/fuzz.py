#!/usr/bin/env python3
"""Mutation fuzzing of every file reader gru_infer has, from its own test fixtures.

    python tools/fuzz.py --format keras_h5 --seconds 60 --seed 1 --out DIR
    python tools/fuzz.py --format all --seconds 600 --out DIR      (each format in turn)
    python tools/fuzz.py --replay DIR/findings/keras_h5-000123.bin --format keras_h5

Each input is a fixture changed by one to four mutations (bit flips, truncation,
byte insertion and deletion, splicing with another fixture, interesting integers
at aligned offsets, zip member rewrites, JSON-aware edits of configs and
headers, HDF5-aware edits near structure signatures).  It runs in a forked child
capped in address space (RLIMIT_AS, 2 GiB) and time (10 s of CPU, 60 s of wall time
as a backstop: a nice'd campaign on a busy machine is starved), through the public
API (gru_infer.convert, or gru_infer.load for weight files, then one call of the
model), and ends as one of the outcomes replay.py prints:

    ok, refused            what must happen (refused: an error of gru_infer's family)
    FOREIGN <type>         any other exception (MemoryError included)
    SIGNAL <name>          the child was killed by a signal (a crash)
    HANG                   no answer within the time cap

Anything but ok/refused is a finding: the input is saved under DIR/findings/ with
a .json naming the format, seed, iteration and mutations, so that
`--seed S --iteration N` regenerates it exactly.  The exit status is 1 when there
were findings.  A format is one FORMATS entry: its seed files, the file suffix,
its mutators and how an input is run.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import io
import json
import math
import os
import random
import re
import select
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
if importlib.util.find_spec("gru_infer") is None:  # a bare checkout; never shadow an installed build
    sys.path.insert(0, os.path.join(ROOT, "src"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

MEMORY_BYTES = 2 << 30
TIMEOUT_S = 10.0  # of CPU time
WALL_BACKSTOP = 6  # times TIMEOUT_S of wall time
INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000,
               0xFFFFFFFFFFFFFFFF, 64, 1000, 4096, 65536, 10**9]
HDF5_SIGNATURES = [b"\x89HDF", b"TREE", b"HEAP", b"SNOD", b"OHDR", b"OCHK", b"GCOL", b"FRHP",
                   b"FHDB", b"FHIB", b"BTHD", b"BTIN", b"BTLF", b"FSHD", b"FSSE", b"SMTB", b"SMLI"]


# -- mutators: (rng, data, other seeds) -> data -----------------------------------------


def flip_bits(rng, data, others):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def set_bytes(rng, data, others):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    return bytes(data)


def truncate(rng, data, others):
    return data[: rng.randrange(len(data))]


def insert_bytes(rng, data, others):
    i = rng.randrange(len(data) + 1)
    chunk = rng.choice([bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
                        data[rng.randrange(len(data)):][: rng.randint(1, 512)],
                        b"\x00" * rng.randint(1, 4096)])
    return data[:i] + chunk + data[i:]


def delete_bytes(rng, data, others):
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, min(4096, len(data) - i)):]


def splice(rng, data, others):
    other = rng.choice(others)
    i, j = rng.randrange(len(data)), rng.randrange(len(other))
    return data[:i] + other[j:j + rng.randint(1, 8192)] + data[i + rng.randint(0, 8192):]


def interesting_integer(rng, data, others, at=None):
    """An edge value written over what may be a length, count or offset field."""
    width = rng.choice([1, 2, 4, 8])
    value = rng.choice(INTERESTING + [len(data), len(data) + 1, len(data) - 1])
    value &= (1 << (8 * width)) - 1
    if at is None:
        at = rng.randrange(0, max(1, len(data) - width), width)
    packed = value.to_bytes(width, rng.choice(["little", "big"]))
    return data[:at] + packed + data[at + width:]


def hdf5_near_signature(rng, data, others):
    """Interesting integers or flips just after an HDF5 structure's signature
    (object headers, B-trees, heaps: where sizes, counts and addresses sit)."""
    spots = [i for sig in HDF5_SIGNATURES for i in _find_all(data, sig)]
    if not spots:
        return interesting_integer(rng, data, others)
    at = rng.choice(spots) + rng.randrange(4, 48)
    if at >= len(data) - 8:
        return flip_bits(rng, data, others)
    if rng.random() < 0.5:
        return interesting_integer(rng, data, others, at=at)
    data = bytearray(data)
    data[at] ^= 1 << rng.randrange(8)
    return bytes(data)


def json_in_place(rng, data, others):
    """Same-length edits inside embedded JSON (an HDF5 model_config attribute):
    a digit changed, a bracket or quote swapped, a word replaced."""
    spots = _find_all(data, b'{"class_name"') + _find_all(data, b'"config"')
    if not spots:
        return flip_bits(rng, data, others)
    data = bytearray(data)
    start = rng.choice(spots)
    for _ in range(rng.randint(1, 3)):
        i = min(len(data) - 1, start + rng.randrange(4000))
        c = data[i]
        if chr(c).isdigit():
            data[i] = ord(rng.choice("0123456789-"))
        else:
            data[i] = ord(rng.choice('[]{}":,0n1'))
    return bytes(data)


def json_edit(rng, value):
    """A structural edit of a parsed JSON value: a node replaced by a wrong
    type, an edge number, a deep nesting, a long list; a key dropped."""
    nodes = []

    def walk(v, parent, key, depth):
        nodes.append((parent, key))
        if depth > 40:
            return
        if isinstance(v, dict):
            for k, child in v.items():
                walk(child, v, k, depth + 1)
        elif isinstance(v, list):
            for k, child in enumerate(v):
                walk(child, v, k, depth + 1)

    walk(value, None, None, 0)
    parent, key = rng.choice(nodes[1:] or nodes)
    if parent is None:
        return rng.choice([[], None, "x", 1, [value]])
    choice = rng.randrange(9)
    if choice == 0 and isinstance(parent, dict):
        del parent[key]
        return value
    replacement = [
        None, True, -1, 0, 2**31, 2**63, 1e308, -2**40, "", "x" * rng.randint(1, 300), [], {},
        [parent[key]] * rng.randint(2, 200),
        _nested(rng.randint(100, 5000)),
        rng.choice(["float16", "int8", "bool", "complex64", "object", "float64", "uint64"]),
        rng.choice(["gru", "dense", "embedding", "activation", "merge", "GRU", "Dense", "Lambda"]),
    ]
    parent[key] = rng.choice(replacement)
    return value


def _nested(depth):
    """A placeholder that _dumps writes as depth nested lists (json.dumps
    itself would recurse too deep)."""
    return f"__DEEP_{depth}__"


def _dumps(value) -> str:
    return re.sub(r'"__DEEP_(\d+)__"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)),
                  json.dumps(value))


def zip_member(rng, data, others):
    """Rewrite one member of a zip (a JSON member edited as JSON, others
    byte-mutated), or an interesting integer in a zip header's size fields."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info, archive.read(info)) for info in archive.infolist()]
    except Exception:  # noqa: BLE001 - already broken: mutate the bytes instead
        return flip_bits(rng, data, others)
    if not members:
        return data
    if rng.random() < 0.25:  # the sizes and offsets the headers declare
        spots = [i + rng.choice([18, 22, 24, 28, 42]) for i in _find_all(data, b"PK\x01\x02")]
        spots += [i + rng.choice([18, 22]) for i in _find_all(data, b"PK\x03\x04")]
        spots += [i + rng.choice([10, 12, 16]) for i in _find_all(data, b"PK\x05\x06")]
        if spots:
            at = rng.choice(spots)
            return data[:at] + rng.choice(INTERESTING).to_bytes(8, "little")[:4] + data[at + 4:]
    index = rng.randrange(len(members))
    info, payload = members[index]
    if info.filename.endswith(".json") and rng.random() < 0.8:
        try:
            payload = _dumps(json_edit(rng, json.loads(payload))).encode()
        except Exception:  # noqa: BLE001
            payload = flip_bits(rng, payload, others) if payload else payload
    elif payload:
        mutate = rng.choice([flip_bits, truncate, interesting_integer, hdf5_near_signature,
                             json_in_place, delete_bytes, insert_bytes])
        payload = mutate(rng, payload, others)
    if rng.random() < 0.1:
        payload = b"\x00" * rng.choice([10**6, 10**7, 5 * 10**7])  # compresses ~1000:1
    members[index] = (info, payload)
    out = io.BytesIO()
    method = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
    with zipfile.ZipFile(out, "w", method) as archive:
        for info, payload in members:
            archive.writestr(info.filename, payload)
    return out.getvalue()


def safetensors_header(rng, data, others):
    """A JSON-aware edit of a safetensors header (the config in its metadata,
    or a tensor's dtype, shape or offsets), written back with a right length."""
    if len(data) < 8:
        return flip_bits(rng, data, others)
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + n])
    except Exception:  # noqa: BLE001
        return interesting_integer(rng, data, others, at=0)
    body = data[8 + n:]
    config = None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(meta, dict) and "config" in meta and rng.random() < 0.6:
        try:
            config = json.loads(meta["config"])
            meta["config"] = _dumps(json_edit(rng, config))
        except Exception:  # noqa: BLE001
            config = None
    if config is None:
        header = json_edit(rng, header)
    text = _dumps(header).encode()
    if rng.random() < 0.1:
        return len(text).to_bytes(8, "little") + text + body[: rng.randrange(len(body) + 1)]
    return len(text).to_bytes(8, "little") + text + body


def protobuf_varint(rng, data, others):
    """A varint (protobuf lengths, counts, dims, enum values) made huge, zero or
    negative at a random place, or a field's length prefix replaced."""
    at = rng.randrange(len(data))
    value = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, len(data), 2**28])
    varint = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        varint.append(byte | (0x80 if value else 0))
        if not value:
            break
    skip = rng.randint(0, 3)
    return data[:at] + bytes(varint) + data[at + skip:]


def json_text(rng, data, others):
    try:
        return _dumps(json_edit(rng, json.loads(data))).encode()
    except Exception:  # noqa: BLE001
        return flip_bits(rng, data, others)


def _find_all(data, needle, limit=2000):
    found, start = [], 0
    while len(found) < limit:
        i = data.find(needle, start)
        if i < 0:
            return found
        found.append(i)
        start = i + 1
    return found


BYTES = [flip_bits, set_bytes, truncate, insert_bytes, delete_bytes, splice, interesting_integer]
PROTOBUF = BYTES + [protobuf_varint] * 3


# -- formats -------------------------------------------------------------------------------


@dataclasses.dataclass
class Format:
    """One reader to fuzz: its seed files, mutators, and how an input runs."""

    name: str
    seeds: Callable[[str], list]          # work dir -> seed file paths (or (file, config) pairs)
    suffix: str
    mutators: list
    run: str = "convert"                  # "convert", "load" or "convert_with_config"
    config_mutators: list = dataclasses.field(default_factory=list)
    # For a checkpoint that is a folder (TF SavedModel, TF checkpoint): each
    # input mutates one file inside a fresh copy of it.


def _glob(*patterns):
    return lambda work: sorted(p for pattern in patterns
                               for p in glob.glob(os.path.join(FIXTURES, pattern)))


def _is_zip(path):
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _torch_seeds(zipped):
    return lambda work: [p for p in _glob("torch/*.pt")(work) if _is_zip(p) == zipped]


def _keras_full_h5(work):
    return [p for p in _glob("keras/*.h5", "keras_graph/*.h5", "keras_layers/*.h5")(work)
            if not os.path.basename(p).startswith("weights_")]


def _keras_weight_pairs(work):
    pairs = [("keras/weights_k3.weights.h5", "keras/weights_k3.json"),
             ("keras/weights_tf2.h5", "keras/weights_tf2.json"),
             ("tf/windows_weights_tf215.weights.h5", "tf/windows_weights_tf215.json"),
             ("tf/cudnn_bidir_tf2.h5", "tf/cudnn_bidir_tf2.json"),
             ("tf/order_tf2.h5", "tf/order_tf2.json")]
    return [(os.path.join(FIXTURES, w), os.path.join(FIXTURES, c)) for w, c in pairs
            if os.path.exists(os.path.join(FIXTURES, w))]


def _tf_folders(prefix):
    """TF checkpoint or SavedModel folders, each with the config JSON beside it (or None)."""
    def seeds(work):
        found = []
        for folder in sorted(glob.glob(os.path.join(FIXTURES, "tf", prefix + "*"))):
            if os.path.isdir(folder):
                config = folder + ".json"
                found.append((folder, config if os.path.exists(config) else None))
        return found
    return seeds


def _safetensors_seeds(work):
    """gru_infer weight files made from the fixtures (plain and reduced precision), plus PyTorch state dicts
    saved with safetensors, plus the packaged demo model."""
    import warnings

    from safetensors.numpy import save_file

    import gru_infer
    from gru_infer.converters.torch_file import load_state_dict

    warnings.simplefilter("ignore", gru_infer.GruInferWarning)  # the forwards state dicts assume
    seeds = sorted(glob.glob(os.path.join(ROOT, "src", "gru_infer", "data", "*.safetensors")))
    os.makedirs(work, exist_ok=True)
    for source in ["keras/bidir_mask_k3.keras", "keras/embedding_tf2.h5", "keras/func_masking_k3.keras",
                   "keras/k3_legacy_func.h5", "torch/bigru2_linear_sd.pt", "torch/fp16.pt",
                   "torch/seq_module.pt"]:
        out = os.path.join(work, os.path.basename(source) + ".safetensors")
        if not os.path.exists(out):
            gru_infer.convert(os.path.join(FIXTURES, source)).save(out)
        seeds.append(out)
    for precision in ("bfloat16", "int8"):  # version 3 files: reduced tensors and their encodings
        out = os.path.join(work, f"bigru2_linear_sd.{precision}.safetensors")
        if not os.path.exists(out):
            gru_infer.convert(os.path.join(FIXTURES, "torch/bigru2_linear_sd.pt"),
                              precision=precision).save(out)
        seeds.append(out)
    for source in ["torch/gru_nobias.pt", "torch/float64.pt"]:
        out = os.path.join(work, os.path.basename(source) + ".state_dict.safetensors")
        if not os.path.exists(out):
            save_file({k: v.copy() for k, v in load_state_dict(os.path.join(FIXTURES, source)).items()},
                      out)
        seeds.append(out)
    return seeds


FORMATS = {f.name: f for f in [
    Format("keras_h5", _keras_full_h5, ".h5",
           BYTES + [hdf5_near_signature, hdf5_near_signature, json_in_place]),
    Format("keras_zip", _glob("keras/*.keras", "keras_graph/*.keras", "keras_layers/*.keras",
                              "tf/*.keras"), ".keras", BYTES + [zip_member] * 4),
    Format("keras_weights", _keras_weight_pairs, ".h5", BYTES + [hdf5_near_signature] * 2,
           run="convert_with_config", config_mutators=[json_text, json_text, flip_bits, truncate]),
    Format("torch_zip", _torch_seeds(True), ".pt", BYTES + [zip_member] * 4),
    Format("torch_legacy", _torch_seeds(False), ".pt", BYTES),
    Format("safetensors", _safetensors_seeds, ".safetensors", BYTES + [safetensors_header] * 4,
           run="load"),
    Format("onnx", _glob("onnx/*.onnx"), ".onnx", PROTOBUF),
    Format("torch_export", _glob("torch_export/*.pt2"), ".pt2", BYTES + [zip_member] * 4),
    Format("tf_checkpoint", _tf_folders("ckpt_"), "", PROTOBUF, run="convert_with_config",
           config_mutators=[json_text, json_text, flip_bits, truncate]),
    Format("tf_savedmodel", _tf_folders("sm_"), "", PROTOBUF, run="convert_with_config",
           config_mutators=[json_text]),
]}


# -- running one input ----------------------------------------------------------------------


MAX_CALL_ELEMENTS = 1 << 22


def _call_once(model):
    """One call of a model on a small input that fits its declared inputs."""
    import numpy as np

    xs = []
    for spec_input in model.inputs:
        # the declared sizes (a fixed time length for Flatten, a vector input), 3 steps and
        # 4 features where any size goes
        shape = [1] + [(3 if i == 0 else 4) if s is None else s
                       for i, s in enumerate(spec_input.shape)]
        if math.prod(shape) > MAX_CALL_ELEMENTS and len(shape) > 2:
            shape[1] = 3  # a declared time length is not enforced; a huge one is the file's claim
        if math.prod(shape) > MAX_CALL_ELEMENTS:
            return  # an input this large would be the harness's allocation, not the reader's
        if spec_input.token_ids:
            xs.append(np.zeros(shape, spec_input.dtype))
        else:
            xs.append(np.full(shape, 0.5, spec_input.dtype))
    if model.time_major:
        xs = [x.swapaxes(0, 1) for x in xs]
    # one thread: what is fuzzed is the reader, not the thread pool (tests/test_fork.py)
    model(*xs, num_threads=1)


def run_input(fmt: Format, path: str, config_path: str | None) -> tuple:
    """In the child: (outcome, message), as replay.py classifies them."""
    import warnings

    import gru_infer

    warnings.simplefilter("ignore")  # assumed forwards and the like: not what is fuzzed

    family = gru_infer.GruInferError
    try:
        if fmt.run == "load":
            model = gru_infer.load(path) if _loads_as_weight_file(path) else gru_infer.convert(path)
        elif fmt.run == "convert_with_config" and config_path:
            model = gru_infer.convert(path, config=config_path)
        else:
            model = gru_infer.convert(path)
    except family as error:
        return "refused", str(error)[:300]
    except BaseException as error:  # noqa: BLE001 - classifying is the point
        return f"FOREIGN {type(error).__name__}", str(error)[:300]
    try:
        _call_once(model)
    except family as error:
        return "refused_on_call", str(error)[:300]
    except BaseException as error:  # noqa: BLE001
        return f"FOREIGN {type(error).__name__} (call)", str(error)[:300]
    return "ok", ""


def _loads_as_weight_file(path) -> bool:
    from gru_infer.spec import file as spec_file

    try:
        return spec_file.read_metadata(path).get("format") == spec_file.FORMAT_NAME
    except Exception:  # noqa: BLE001 - load() says what is wrong
        return True


def run_capped(fmt: Format, path: str, config_path, memory: int, timeout: float) -> tuple:
    """Fork a child capped at memory bytes of address space; (outcome, message, seconds)."""
    import resource

    read_end, write_end = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            outcome = run_input(fmt, path, config_path)
            os.write(write_end, json.dumps(outcome).encode()[:60000])
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    try:
        while True:
            # A hang is timeout seconds of CPU (the child's and its reaped
            # children's), as replay.py's 10 s on an idle machine; wall time
            # only as a backstop, since a nice'd campaign on a busy machine
            # can be starved for long stretches.
            cpu, wall = _cpu_seconds(pid), time.monotonic() - start
            if cpu > timeout or wall > WALL_BACKSTOP * timeout:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "HANG", f"no answer after {cpu:.0f} s of CPU, {wall:.0f} s", wall
            ready, _, _ = select.select([read_end], [], [], 0.05)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    if os.WIFSIGNALED(status):
        return f"SIGNAL {signal.Signals(os.WTERMSIG(status)).name}", "", seconds
    if not chunks:
        return f"EXIT {os.WEXITSTATUS(status)}", "no result", seconds
    outcome, message = json.loads(b"".join(chunks))
    return outcome, message, seconds


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and of the children it has waited for (/proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# -- the campaign -------------------------------------------------------------------------------


def make_input(fmt: Format, seeds: list, seed: int, iteration: int, work: str):
    """(input path, config path or None, description) for one iteration, from
    (seed, iteration) alone.  A folder seed is copied and one file in it mutated."""
    rng = random.Random(f"{seed}:{fmt.name}:{iteration}")
    choice = rng.choice(seeds)
    source, config_source = choice if isinstance(choice, tuple) else (choice, None)
    folder = os.path.isdir(source)
    target = source
    if folder:
        files = sorted(os.path.relpath(os.path.join(d, f), source)
                       for d, _, names in os.walk(source) for f in names)
        target = os.path.join(source, rng.choice(files))
    data = _read(target)
    candidates = [s[0] if isinstance(s, tuple) else s for s in rng.sample(seeds, min(3, len(seeds)))]
    others = [_read(c) for c in candidates if not os.path.isdir(c)] or [data]
    config_data = _read(config_source) if config_source else None
    steps = [] if not folder else [os.path.relpath(target, source)]
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        if config_data is not None and rng.random() < 0.3:
            mutate = rng.choice(fmt.config_mutators)
            config_data = mutate(rng, config_data, [config_data]) if config_data else config_data
            steps.append("config:" + mutate.__name__)
        else:
            mutate = rng.choice(fmt.mutators)
            data = mutate(rng, data, others) if data else data
            steps.append(mutate.__name__)
    path = os.path.join(work, f"input{fmt.suffix}")
    if folder:
        path = os.path.join(work, "input_" + os.path.basename(source))
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(source, path)
        with open(os.path.join(path, os.path.relpath(target, source)), "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    config_path = None
    if config_data is not None:
        config_path = os.path.join(work, "input.json")
        with open(config_path, "wb") as f:
            f.write(config_data)
    return path, config_path, {"seed_file": os.path.relpath(source, ROOT), "mutations": steps}


_SEED_CACHE: dict = {}


def _read(path):
    if path not in _SEED_CACHE:
        with open(path, "rb") as f:
            _SEED_CACHE[path] = f.read()
    return _SEED_CACHE[path]


def campaign(fmt: Format, seconds: float, seed: int, out: str, memory: int, timeout: float,
             first_iteration: int = 0, max_inputs: int | None = None, quiet: bool = False) -> dict:
    os.makedirs(os.path.join(out, "findings"), exist_ok=True)
    seeds = fmt.seeds(os.path.join(out, "seeds"))
    if not seeds:
        raise SystemExit(f"{fmt.name}: no seed files")
    counts: dict = {}
    findings = []
    start = time.monotonic()
    iteration = first_iteration
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{fmt.name}-") as work:
        while time.monotonic() - start < seconds and (max_inputs is None
                                                       or iteration - first_iteration < max_inputs):
            path, config_path, described = make_input(fmt, seeds, seed, iteration, work)
            outcome, message, _ = run_capped(fmt, path, config_path, memory, timeout)
            key = outcome.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
            if not outcome.startswith(("ok", "refused")):
                name = f"{fmt.name}-{seed}-{iteration:06d}"
                if os.path.isdir(path):
                    shutil.copytree(path, os.path.join(out, "findings", name))
                else:
                    with open(os.path.join(out, "findings", name + fmt.suffix), "wb") as f:
                        f.write(_read_fresh(path))
                if config_path:
                    with open(os.path.join(out, "findings", name + ".config.json"), "wb") as f:
                        f.write(_read_fresh(config_path))
                record = dict(format=fmt.name, seed=seed, iteration=iteration, outcome=outcome,
                              message=message, **described)
                with open(os.path.join(out, "findings", name + ".finding.json"), "w") as f:
                    json.dump(record, f, indent=1)
                findings.append(record)
                if not quiet:
                    print(f"  finding {name}: {outcome} {message[:120]}", flush=True)
            iteration += 1
    summary = {"format": fmt.name, "seed": seed,
               "hdf5_in_process": os.environ.get("GRU_INFER_HDF5_IN_PROCESS") == "1",
               "inputs": iteration - first_iteration,
               "seconds": round(time.monotonic() - start, 1), "outcomes": counts,
               "findings": len(findings)}
    mode = "-in-process" if summary["hdf5_in_process"] else ""
    with open(os.path.join(out, f"summary-{fmt.name}{mode}-{seed}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _read_fresh(path):
    with open(path, "rb") as f:
        return f.read()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", default="all", help=f"one of {sorted(FORMATS)} or 'all'")
    parser.add_argument("--seconds", type=float, default=60, help="per format")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="fuzz-out")
    parser.add_argument("--memory-mb", type=int, default=MEMORY_BYTES >> 20)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--iteration", type=int, default=None,
                        help="regenerate and run this one iteration (with --seed, --format)")
    parser.add_argument("--replay", default=None, help="run one saved input (with --format)")
    parser.add_argument("--config", default=None, help="with --replay: the config JSON")
    parser.add_argument("--in-process", action="store_true",
                        help="read HDF5 in the fuzzed process (GRU_INFER_HDF5_IN_PROCESS=1): many "
                             "more inputs a second, and libhdf5's own crashes and hangs show as "
                             "findings (the default path survives them in its reader process)")
    args = parser.parse_args(argv)
    if args.in_process:
        os.environ["GRU_INFER_HDF5_IN_PROCESS"] = "1"
    names = sorted(FORMATS) if args.format == "all" else [args.format]
    for name in names:
        if name not in FORMATS:
            parser.error(f"unknown format {name!r}; known: {sorted(FORMATS)}")
    memory = args.memory_mb << 20
    # imported once here, not in every forked child
    import importlib

    for module in ("api", "converters.torch", "converters.onnx", "converters.torch_export",
                   "converters.tf_savedmodel", "converters.tf_bundle", "runtime.program"):
        try:
            importlib.import_module(f"gru_infer.{module}")
        except ImportError:
            pass
    try:  # the ONNX reader imports the onnx package on first use: 2 s in every child otherwise
        from gru_infer.converters.onnx import _import_onnx

        _import_onnx()
    except Exception:  # noqa: BLE001 - no onnx here: its format refuses every input
        pass
    if args.replay:
        outcome, message, seconds = run_capped(FORMATS[names[0]], args.replay, args.config, memory,
                                               args.timeout)
        print(f"{os.path.basename(args.replay)}: {outcome} ({seconds:.2f} s) {message}")
        return 0 if outcome.startswith(("ok", "refused")) else 1
    total_findings = 0
    for name in names:
        if args.iteration is not None:
            summary = campaign(FORMATS[name], float("inf"), args.seed, args.out, memory, args.timeout,
                               first_iteration=args.iteration, max_inputs=1)
        else:
            summary = campaign(FORMATS[name], args.seconds, args.seed, args.out, memory, args.timeout)
        total_findings += summary["findings"]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary["outcomes"].items()))
        print(f"{name}: {summary['inputs']} inputs in {summary['seconds']} s: {outcomes}; "
              f"{summary['findings']} findings", flush=True)
    return 1 if total_findings else 0


if __name__ == "__main__":
    sys.exit(main())
