"""gru-infer: convert checkpoints, inspect and run models from the shell.

Errors print one line and exit 1; --debug (anywhere on the line) shows the
traceback.  A closed pipe (`gru-infer demo | head -3`) stops quietly with 141.
Also run as `python -m gru_infer`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._console import run_command
from ._version import __version__

PROG = "gru-infer"


class CommandError(Exception):
    """A refusal worded for the command line (paths as typed, flags not keywords)."""


# -- errors in the command line's terms ------------------------------------------------------

# The converters word their errors for Python callers (keyword arguments); a
# command-line user typed flags.
_FLAG_NAMES: List[Tuple[str, Union[str, Callable[[re.Match], str]]]] = [
    (r" \(gru-infer: --forward\)", ""),
    (r"\bforward=\[\.\.\.\]", "--forward ITEM[,ITEM...]"),
    (r"\bforward=\[([^\]]*)\]",
     lambda m: "--forward " + ",".join(i.strip().strip("'\"") for i in m[1].split(","))),
    (r"\bforward= ?", "--forward "),
    (r"\bhead=\[\.\.\.\]", "--head PREFIX[,PREFIX...]"),
    (r"\bbatch_first=False\b", "--time-major"),
    (r"\bstrict=False\b", "--no-strict"),
    (r"\bprefix=(\.\.\.)?", "--prefix"),
]
for _name in ("head_activation", "hidden_activation", "head_on", "batch_first"):
    _flag = "--time-major" if _name == "batch_first" else "--" + _name.replace("_", "-")
    _FLAG_NAMES += [(rf"\b{_name}=(?=\S)", _flag + " "), (rf"\b{_name}\b=?", _flag)]
# "config" is also a plain word ("the model config"): only the keyword is an option
_FLAG_NAMES += [(r"(?<![-\w])config=(\.\.\.)?", "--config")]


def in_cli_terms(message: str) -> str:
    """message with the Python option names replaced by the flags that set them."""
    for pattern, flag in _FLAG_NAMES:
        message = re.sub(pattern, flag, message)
    return message


# -- files -----------------------------------------------------------------------------------


def check_writable(path: str) -> None:
    """Refuse, naming path as given, an output that cannot be written there."""
    if os.path.isdir(path):
        raise CommandError(f"cannot write {path}: it is a folder")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write {path}: there is no folder {os.path.dirname(path)}")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"cannot write {path}: its folder is not writable")


def write_atomically(path: str, write: Callable) -> None:
    """write(file) into a hidden temporary file beside path, then rename it
    over path: a failure leaves neither a partial output nor the temporary
    file behind, and the error names path, not the temporary file."""
    from .spec.file import publish, temporary_file_beside

    check_writable(path)
    try:
        fd, tmp = temporary_file_beside(path, f".{os.path.basename(path)}.")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        publish(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
        raise


# -- models ----------------------------------------------------------------------------------


def _torch_options(args) -> dict:
    """The PyTorch options given on the command line, as convert() keywords."""
    options = {}
    for key in ("forward", "prefix", "head_activation", "hidden_activation", "head_on",
                "batch_first"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    head = getattr(args, "head", None)
    if head is not None:
        options["head"] = [] if head.lower() in ("", "none") else [h for h in head.split(",") if h]
    if getattr(args, "strict", True) is False:
        options["strict"] = False
    return options


def open_model(args, path: Optional[str] = None):
    """The model in path (default: args.file), converted with the flags given."""
    from .api import convert

    path = path or args.file
    options = _torch_options(args)
    if options:
        what = _not_pytorch(path)
        if what:
            raise CommandError(f"{' '.join(f.split()[0] for f in _given_flags(args))}: for "
                               f"PyTorch checkpoints only, and {path} is {what}")
    return convert(path, config=getattr(args, "config", None),
                   precision=getattr(args, "precision", None), **options)


def _not_pytorch(path: str) -> Optional[str]:
    """What path is when it is surely not a PyTorch checkpoint, else None."""
    from .converters import detect_format

    try:
        kind = detect_format(path)
    except (OSError, ValueError):
        return None  # convert() says what is wrong with it
    named = {"keras": "a Keras file", "tf_savedmodel": "a TensorFlow SavedModel",
             "tf_checkpoint": "a TensorFlow checkpoint", "onnx": "an ONNX model",
             "torch_export": "a torch.export archive"}
    if kind in named:
        return named[kind]
    if kind == "safetensors":
        from .spec import file

        try:
            if file.read_metadata(path).get("format") == file.FORMAT_NAME:
                return "a gru_infer weight file"
        except (OSError, ValueError):
            return None
    return None


def _batch_axis(row_shape, time_major: bool, is_input: bool) -> int:
    """Where the batch axis goes: a time-major model takes every input and
    gives every output with a time axis as (time, batch, ...)."""
    return 1 if time_major and (is_input or len(row_shape) >= 2) else 0


def _full_shape(row_shape, time_major: bool, is_input: bool) -> list:
    """A per-row shape with the batch axis put in (None: any size)."""
    shape = list(row_shape)
    axis = _batch_axis(row_shape, time_major, is_input)
    return shape[:axis] + [None] + shape[axis:]


def _shape_text(full_shape, batch_axis: int) -> str:
    dims = ["?" if s is None else str(s) for s in full_shape]
    dims[batch_axis] = "batch"
    time_axis = 0 if batch_axis == 1 else 1
    if len(dims) > 1 and full_shape[time_axis] is None:
        dims[time_axis] = "time"
    return "(" + ", ".join(dims) + ")"


def output_name(ref) -> str:
    """An output's name: its layer's name, with [i] for a layer's further outputs."""
    source, index = ref
    return f"{source}[{index}]" if index else source


def describe_model(model) -> dict:
    """What `info --json` prints: the model's inputs, outputs and layers."""
    from .spec.summary import rows

    spec = model.spec
    dtype = str(np.dtype(spec.dtype))
    return {
        "parameters": spec.parameter_count,
        "compute_dtype": dtype,
        "precision": spec.precision,
        "time_major": spec.time_major,
        "inputs": [{"name": i.name, "shape": _full_shape(i.shape, spec.time_major, True),
                    "dtype": str(np.dtype(i.dtype))} for i in spec.inputs],
        "outputs": [{"name": output_name(ref), "shape": _full_shape(shape, spec.time_major, False),
                     "dtype": dtype} for ref, shape in zip(spec.outputs, spec.output_shapes())],
        "layers": rows(spec),
        "source": spec.source,
    }


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def model_text(model) -> str:
    """The model's summary table, then its inputs and outputs as a table with dtypes."""
    described = describe_model(model)
    lines = [line for line in model.summary().splitlines()
             if not line.startswith(("inputs:", "outputs:"))]
    batch_axis = 1 if model.time_major else 0
    io = [("", "name", "shape", "dtype")]
    io += [("input", i["name"], _shape_text(i["shape"], batch_axis), i["dtype"])
           for i in described["inputs"]]
    io += [("output", o["name"],
            _shape_text(o["shape"], batch_axis if len(o["shape"]) >= 3 else 0), o["dtype"])
           for o in described["outputs"]]
    return "\n".join(lines) + "\n\n" + format_table(io)


# -- commands --------------------------------------------------------------------------------


def cmd_convert(args) -> int:
    check_writable(args.dst)
    model = open_model(args, args.src)
    try:
        model.save(args.dst)
    except OSError as error:
        raise CommandError(f"cannot write {args.dst}: {error.strerror or error}") from None
    print(model_text(model))
    print(f"wrote {args.dst} ({os.path.getsize(args.dst):,} bytes)")
    return 0


def cmd_info(args) -> int:
    if args.file is None and not args.system:
        raise CommandError("info needs a model file, or --system for this installation")
    report = {}
    if args.system:
        from .config import config, format_config

        report["system"] = config()
        if not args.json:
            print(format_config(report["system"]))
            if args.file is not None:
                print()
    if args.file is None:
        if args.json:
            print(json.dumps(report["system"], indent=2))
        return 0

    from .converters import detect_format

    try:
        kind = detect_format(args.file)
    except ValueError:
        kind = "unknown"
    described = None
    if kind == "torch":  # what the checkpoint holds, before the guesses convert() makes
        from .converters.torch import describe_torch_file

        described = describe_torch_file(args.file)
        if not args.json:
            print(described)
            print("converted with " + (" ".join(_given_flags(args)) or "the default options") + ":")
    model = open_model(args)
    if args.json:
        info = {"file": args.file, "format": kind, **describe_model(model)}
        if described is not None:
            info["checkpoint"] = described
        if args.system:
            info["system"] = report["system"]
        print(json.dumps(info, indent=2, default=str))
    else:
        print(model_text(model))
    return 0


_OPTION_FLAGS = {"forward": "--forward", "prefix": "--prefix", "head": "--head", "head_activation": "--head-activation",
                 "hidden_activation": "--hidden-activation", "head_on": "--head-on"}


def _given_flags(args) -> list:
    """The PyTorch flags given, as typed (for `info`'s heading)."""
    flags = []
    for key, value in _torch_options(args).items():
        if key == "batch_first":
            flags.append("--time-major")
        elif key == "strict":
            flags.append("--no-strict")
        else:
            flags.append(f"{_OPTION_FLAGS[key]} {','.join(value) if key == 'head' else value}")
    return flags


def load_input(path: str, model, array: Optional[str]):
    """The model's input(s) from an .npy file, or from an .npz file by array
    name: the arrays named as the model's inputs, the one --array names, or
    the only array."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise CommandError(f"{path}: not a readable .npy or .npz file ({error})") from None
    names = [i.name for i in model.inputs]
    if not hasattr(loaded, "files"):  # one .npy array
        if array is not None:
            raise CommandError(f"--array {array}: {path} is an .npy file, which holds one "
                               "unnamed array")
        if len(names) > 1:
            raise CommandError(f"this model takes {len(names)} inputs ({', '.join(names)}): give "
                               "an .npz file with one array named after each")
        return loaded
    with loaded:
        files = list(loaded.files)
        if array is not None:
            if array not in files:
                raise CommandError(f"--array {array}: {path} holds no such array; it holds "
                                   f"{', '.join(files) or 'none'}")
            return loaded[array]
        if all(n in files for n in names):
            arrays = {n: loaded[n] for n in names}
            return arrays if len(names) > 1 else arrays[names[0]]
        if len(names) == 1 and len(files) == 1:
            return loaded[files[0]]
        if len(names) > 1:
            raise CommandError(f"this model takes inputs {', '.join(names)}: {path} must hold "
                               f"arrays with those names; it holds {', '.join(files) or 'none'}")
        raise CommandError(f"{path} holds several arrays ({', '.join(files)}): choose one with "
                           "--array NAME")


def cmd_run(args) -> int:
    model = open_model(args)
    outputs = [output_name(ref) for ref in model.outputs]
    as_npz = args.output.lower().endswith(".npz")
    if len(outputs) > 1 and not as_npz:
        raise CommandError(f"this model has {len(outputs)} outputs ({', '.join(outputs)}): give "
                           "an output path ending in .npz, which holds one array per output")
    check_writable(args.output)
    x = load_input(args.input, model, args.array)
    y = model(x, num_threads=args.threads)
    values = y if isinstance(y, list) else [y]
    if as_npz:
        arrays = dict(zip(outputs, values))
        write_atomically(args.output, lambda f: np.savez(f, **arrays))
        shown = ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items())
        print(f"wrote {args.output}: {shown}")
    else:
        write_atomically(args.output, lambda f: np.save(f, values[0], allow_pickle=False))
        print(f"wrote {args.output}: shape {values[0].shape}, dtype {values[0].dtype}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, count=args.count)
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_model_file

    bench_model_file(args.file, threads=args.threads, batch_sizes=args.batch_sizes,
                     steps=args.steps, seconds=args.seconds, as_json=args.json,
                     precision=args.precision)
    return 0


# -- the parser ------------------------------------------------------------------------------

PRECISION_HELP = ("store GRU and Dense weights as bfloat16 or int8 (one scale per output row): "
                  "2x / 4x smaller and faster, with a small stated error (docs/cli.md); native: "
                  "full precision (default: as the file says)")


def _add_precision(parser) -> None:
    parser.add_argument("--precision", choices=["native", "bfloat16", "int8"], help=PRECISION_HELP)


def _add_model_options(parser) -> None:
    _add_precision(parser)
    parser.add_argument("--config", metavar="JSON",
                        help="Keras weights-only files (.weights.h5) and TF checkpoints: the "
                             "model's JSON config, model.to_json() (default: the .json file "
                             "beside it)")
    group = parser.add_argument_group(
        "PyTorch checkpoints", "what a state dict cannot say; a whole-module pickle says some "
        "of it itself")
    group.add_argument("--forward", metavar="ITEM[,ITEM...]",
                       help="what forward() does, in order: module prefixes, activations and "
                            "selectors, e.g. gru,last_step,relu,fc (without it, gru_infer "
                            "assumes one and warns)")
    group.add_argument("--prefix", metavar="PREFIX",
                       help="use the nn.GRU stack whose keys start with PREFIX (when there "
                            "are several)")
    group.add_argument("--head", metavar="PREFIX[,PREFIX...]",
                       help="the nn.Linear layers of the head, in order ('none': no head; "
                            "default: found from the keys)")
    group.add_argument("--head-activation", dest="head_activation", metavar="NAME",
                       help="activation after the last Linear: linear (default), sigmoid, "
                            "softmax, tanh, relu, ...")
    group.add_argument("--hidden-activation", dest="hidden_activation", metavar="NAME",
                       help="activation between the Linears of a head with several")
    group.add_argument("--head-on", dest="head_on", choices=["every_step", "last_step"],
                       help="apply the head to every timestep (default) or to the state "
                            "at each row's last step")
    group.add_argument("--time-major", dest="batch_first", action="store_const",
                       const=False,
                       help="the nn.GRU had batch_first=False: inputs and outputs are "
                            "(time, batch, ...)")
    group.add_argument("--no-strict", dest="strict", action="store_false",
                       help="convert even when model tensors would be left unused")


EPILOGS = {
    None: """examples:
  gru-infer convert model.keras model.safetensors
  gru-infer info model.safetensors
  gru-infer run model.safetensors x.npy y.npy
  gru-infer demo
  gru-infer info --system""",
    "convert": """examples:
  gru-infer convert model.keras model.safetensors
  gru-infer convert model.weights.h5 model.safetensors --config model.json
  gru-infer convert model.pt model.safetensors --forward gru,last_step,fc,sigmoid
  gru-infer convert model.pt model.safetensors --head-activation sigmoid
  gru-infer convert model.keras model_int8.safetensors --precision int8""",
    "info": """examples:
  gru-infer info model.safetensors
  gru-infer info model.pt --head-on last_step
  gru-infer info model.safetensors --json
  gru-infer info --system""",
    "run": """The output path is written as given, atomically: one output as .npy, or,
for a path ending in .npz, one array per output, named as `info` names the
outputs (required for models with several outputs).

examples:
  gru-infer run model.safetensors x.npy y.npy
  gru-infer run model.safetensors inputs.npz y.npz --array x""",
    "demo": """examples:
  gru-infer demo
  gru-infer demo --seed 7 --count 16""",
    "bench": """examples:
  gru-infer bench model.safetensors
  gru-infer bench model.safetensors --threads 1,2 --batch-sizes 1,32 --seconds 0.5
  gru-infer bench model.safetensors --json > timings.json
  gru-infer bench model.safetensors --precision bfloat16""",
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    # --debug is accepted before or after the command: both levels define it,
    # and only a given one sets it (SUPPRESS), so the sub-level cannot reset it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     epilog=EPILOGS[None], parents=[common],
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS[name],
                           parents=[common], formatter_class=formatter)
        p.set_defaults(func=func)
        return p

    p = command("convert", "convert a checkpoint (.keras, .h5, .weights.h5, SavedModel folder, "
                "TF checkpoint, .onnx, .pt, .pt2, .safetensors) into a gru_infer weight file",
                cmd_convert)
    p.add_argument("src", help="the checkpoint to read")
    p.add_argument("dst", help="the weight file to write (.safetensors)")
    _add_model_options(p)

    p = command("info", "show a model's layers, inputs and outputs (shapes, dtypes), or this "
                "installation", cmd_info)
    p.add_argument("file", nargs="?", help="a weight file or checkpoint")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.add_argument("--system", action="store_true",
                   help="print how gru_infer is built and runs here (gru_infer.show_config())")
    _add_model_options(p)

    p = command("run", "run a model on an input array file and write its outputs", cmd_run)
    p.add_argument("file", help="a weight file or checkpoint")
    p.add_argument("input", help="input array: .npy, or .npz (arrays named as the inputs, or "
                   "the only array, or --array)")
    p.add_argument("output", help="where to write: .npy (one output) or .npz (one array per "
                   "output)")
    p.add_argument("--array", metavar="NAME", help="the array to use from an .npz input")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads to run on (default: every core this process may use)")
    _add_model_options(p)

    p = command("demo", "run the bundled example model: waveforms recognised whole and "
                "streamed, with timings", cmd_demo)
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed for the example signals (default: fresh ones each run)")
    p.add_argument("--count", type=int, default=8, metavar="N",
                   help="examples shown in the table (default: 8)")

    p = command("bench", "time a model on this machine: streaming step, whole sequence, "
                "throughput", cmd_bench)
    p.add_argument("file", help="a weight file or checkpoint")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="thread counts to measure at (default: 1 and the default count, "
                        "gru_infer.get_num_threads())")
    p.add_argument("--batch-sizes", dest="batch_sizes", default="1,8,64", metavar="B[,B...]",
                   help="batch sizes for throughput (default: 1,8,64)")
    p.add_argument("--steps", type=int, default=100, metavar="T",
                   help="sequence length for whole sequences (default: 100)")
    p.add_argument("--seconds", type=float, default=1.0, metavar="S",
                   help="time budget per measurement (default: 1)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_precision(p)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line in the command line's terms (no source line)."""
    print(f"{PROG}: warning: {in_cli_terms(str(message))}", file=file or sys.stderr)


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Run the command line argv (default: sys.argv[1:]); the exit status."""
    args = build_parser(prog).parse_args(argv)
    debug = getattr(args, "debug", False)

    def body() -> int:
        try:
            with warnings.catch_warnings():
                if not debug:
                    warnings.showwarning = _show_warning
                return args.func(args)
        except (BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as error:  # one clear line, unless --debug
            if debug:
                raise
            message = str(error) or type(error).__name__
            if not isinstance(error, CommandError):
                message = in_cli_terms(message)
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 1

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
