"""Keras files are read in a child process, under time and memory caps.

Keras files are HDF5, and HDF5 is read by libhdf5 (through h5py): C code that a
corrupted file can crash (SIGSEGV) or send into an endless loop, neither of
which Python can catch or time out.  So the HDF5 reading happens in a child
process: a fresh interpreter (never a fork of the caller, whose threads and
locks it would inherit) capped in address space, CPU time, wall time and the
bytes it may write.  The child runs the ordinary converter (keras.py) and
writes the ModelSpec it made as a gru_infer weight file; the parent reads that
file with spec/file.py, which checks everything in it, so nothing the child
sends is trusted and nothing is unpickled.  A refusal comes back as a small
JSON status (the error's class, from a fixed list, and its message); a crash,
a timeout or exhausted memory becomes a KerasFileError naming the file.

The cost is one interpreter start per conversion (about 0.2 s; measured in
tools/fuzz.py --measure-isolation).  Where no child can be started (a frozen
application, whose sys.executable is not Python) or GRU_INFER_HDF5_IN_PROCESS=1
is set, the reading happens in this process, as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings

from ..errors import ConversionError, FormatError, GruInferError, GruInferWarning
from . import _limits

# Caps on the child: a base plus a share per byte of input (the largest real
# Keras GRU checkpoints are tens of MB and convert in well under a second).
CPU_SECONDS = 3.0
CPU_SECONDS_PER_MB = 1 / 16
# The CPU cap stops a looping libhdf5; the wall-time cap (this times the CPU cap)
# only a blocked child, and must leave room for a busy machine.
WALL_FACTOR = 10.0
MEMORY_BYTES = 512 << 20
MEMORY_PER_INPUT_BYTE = 8
STATUS_BYTES = 1 << 20

# -S: no site processing (.pth files); the parent's sys.path is handed over whole
_BOOTSTRAP = ("import sys, json; sys.path[:] = json.load(open(sys.argv[1])); "
              "from gru_infer.converters._isolation import child_main; child_main(sys.argv[2:])")


def in_process() -> bool:
    """Whether HDF5 is read in this process (no child can be started)."""
    return (os.environ.get("GRU_INFER_HDF5_IN_PROCESS") == "1" or getattr(sys, "frozen", False)
            or not sys.executable)


def input_bytes(path) -> int:
    """What the child's caps scale with: the file's size, or for a .keras archive
    the larger of that and its weights member's declared (capped) size."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            is_zip = f.read(2) == b"PK"
        if is_zip:
            with _limits.open_zip(path) as archive:
                info = archive.getinfo("model.weights.h5")
                size = max(size, min(info.file_size, _limits.member_limit(info)))
    except (FormatError, KeyError, OSError):
        pass  # the converter says what is wrong with the archive
    return size


def convert_keras_isolated(path, *, config=None):
    """convert_keras(path, config=config), its HDF5 reading in a capped child."""
    from ..spec import file as spec_file
    from .keras import KerasFileError, convert_keras

    path = os.fspath(path)
    if in_process():
        return convert_keras(path, config=config)
    size_mb = input_bytes(path) / 2**20
    cpu_s = CPU_SECONDS + CPU_SECONDS_PER_MB * size_mb
    wall_s = WALL_FACTOR * cpu_s
    memory = MEMORY_BYTES + MEMORY_PER_INPUT_BYTE * int(size_mb * 2**20)
    with tempfile.TemporaryDirectory(prefix="gru_infer-keras-") as tmp:
        out = os.path.join(tmp, "model.safetensors")
        status_path = os.path.join(tmp, "status.json")
        stderr_path = os.path.join(tmp, "stderr.txt")
        config_arg = _config_argument(config, tmp, path)
        paths = os.path.join(tmp, "sys_path.json")
        with open(paths, "w") as f:
            json.dump(sys.path, f)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", GRU_INFER_HDF5_IN_PROCESS="1")
        command = [sys.executable, "-S", "-c", _BOOTSTRAP, paths, path, out, status_path,
                   config_arg, str(memory), str(int(cpu_s) + 1), str(memory)]
        with open(stderr_path, "wb") as stderr:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=stderr, env=env)
            try:
                code = child.wait(timeout=wall_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise KerasFileError(f"{path}: reading it took longer than {wall_s:.0f} s; the "
                                     "HDF5 file is corrupt (the HDF5 library loops on it) or "
                                     "hostile") from None
        if code != 0 or not os.path.exists(status_path):
            raise KerasFileError(f"{path}: {_describe_exit(code, cpu_s, memory)} "
                                 f"({_tail(stderr_path)})")
        status = _read_status(status_path, path)
        for message in status.get("warnings", []):
            warnings.warn(str(message), GruInferWarning, stacklevel=3)
        if status.get("status") != "ok":
            raise _error_from_status(status, path)
        try:
            return spec_file.load(out)
        except FormatError as error:
            raise KerasFileError(f"{path}: the converted model does not check out: "
                                 f"{error}") from error


def _config_argument(config, tmp: str, path) -> str:
    """The config as the child takes it: a path, or '' for the .json beside the file."""
    from .keras import KerasFileError

    if config is None:
        return ""
    if isinstance(config, dict):
        try:
            text = json.dumps(config)
        except (TypeError, ValueError, RecursionError) as error:
            raise KerasFileError(f"{path}: the model config given is not JSON-able "
                                 f"({type(error).__name__}: {error})") from error
    elif isinstance(config, (str, os.PathLike)) and str(config).lstrip().startswith("{"):
        text = str(config)
    elif isinstance(config, (str, os.PathLike)):
        return os.path.abspath(os.fspath(config))
    else:
        raise TypeError(f"config must be a dict, JSON text or a path, got {type(config).__name__}")
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        f.write(text)
    return config_path


def _describe_exit(code: int, cpu_s: float, memory: int) -> str:
    if code is not None and code < 0:
        number = -code
        if number == getattr(signal, "SIGXCPU", None):
            return (f"reading it used more than {cpu_s:.0f} s of CPU; the HDF5 file is corrupt "
                    "(the HDF5 library loops on it) or hostile")
        if number == getattr(signal, "SIGXFSZ", None):
            return "reading it would write more than its size allows; the file is corrupt or hostile"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the HDF5 library crashed ({name}) reading it; the file is corrupt or hostile"
    return (f"reading it failed (exit status {code}); it may need more than "
            f"{memory // 2**20} MiB, or the file is corrupt")


def _tail(stderr_path: str, size: int = 300) -> str:
    try:
        with open(stderr_path, "rb") as f:
            f.seek(max(0, os.path.getsize(stderr_path) - size))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "no message"
    return ("..." + text[-size:]) if text else "no message"


def _read_status(status_path: str, path) -> dict:
    from .keras import KerasFileError

    with open(status_path, "rb") as f:
        data = f.read(STATUS_BYTES + 1)
    try:
        status = _limits.load_json(data, "the reader's status", max_bytes=STATUS_BYTES)
    except FormatError as error:
        raise KerasFileError(f"{path}: the reader process answered badly: {error}") from error
    if not isinstance(status, dict):
        raise KerasFileError(f"{path}: the reader process answered badly")
    return status


# The errors a child may report, by name; anything else comes back as a KerasFileError.
def _error_classes() -> dict:
    from .keras import KerasFileError

    return {"KerasFileError": KerasFileError, "FormatError": FormatError,
            "ConversionError": ConversionError, "GruInferError": GruInferError,
            "FileNotFoundError": FileNotFoundError}


def _error_from_status(status: dict, path) -> BaseException:
    from .keras import KerasFileError

    message = str(status.get("message", ""))[:10_000]
    if status.get("status") == "memory":
        return KerasFileError(f"{path}: reading it ran out of memory (the cap is "
                              f"{status.get('limit_mib', '?')} MiB); the file is corrupt or "
                              "hostile")
    cls = _error_classes().get(status.get("class"))
    error = cls(message) if cls is not None else \
        KerasFileError(f"{path}: corrupt or unreadable Keras file ({message})")
    cause = status.get("cause")
    if isinstance(cause, list) and len(cause) == 2:
        error.__cause__ = _foreign_error(*map(str, cause))
    return error


def _foreign_error(name: str, message: str) -> BaseException:
    """A stand-in for the child's original error (h5py's, zipfile's, ...): the
    builtin class of that name when there is one, else Exception."""
    import builtins

    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return Exception(f"{name}: {message}")
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - a class that takes other arguments
        return Exception(f"{name}: {message}")


def child_main(argv: list) -> None:
    """The child: convert, save the spec, write the status; exit 0 whenever a
    status was written."""
    path, out, status_path, config_arg, memory, cpu_s, file_bytes = argv
    try:
        import resource

        limits = [(resource.RLIMIT_CPU, int(cpu_s)), (resource.RLIMIT_FSIZE, int(file_bytes)),
                  (resource.RLIMIT_CORE, 0)]
        if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan's shadow needs terabytes
            limits.append((resource.RLIMIT_AS, int(memory)))
        for limit, value in limits:
            soft, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, hard))
    except (ImportError, ValueError, OSError):
        pass  # no resource module (Windows): the parent's wall-time cap still holds
    status: dict
    caught: list = []
    try:
        from ..spec import file as spec_file
        from .keras import convert_keras

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = convert_keras(path, config=config_arg or None)
        spec_file.save(spec, out)
        status = {"status": "ok"}
    except MemoryError:
        status = {"status": "memory", "limit_mib": int(memory) >> 20}
    except (GruInferError, FileNotFoundError) as error:
        status = {"status": "error", "class": type(error).__name__, "message": str(error)}
        if error.__cause__ is not None:
            status["cause"] = [type(error.__cause__).__name__, str(error.__cause__)[:500]]
    except BaseException as error:  # noqa: BLE001 - any failure of the reader is a refusal
        status = {"status": "error", "class": None,
                  "message": f"{type(error).__name__}: {str(error)[:500]}",
                  "cause": [type(error).__name__, str(error)[:500]]}
    status["warnings"] = [str(w.message) for w in caught if issubclass(w.category, GruInferWarning)]
    with open(status_path, "w") as f:
        json.dump(status, f)
