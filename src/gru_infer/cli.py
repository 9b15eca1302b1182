"""gru-infer: convert checkpoints, inspect and run models from the shell.

Errors print one line and exit non-zero; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _open_model(path, config=None, torch_options=None):
    from .api import convert

    return convert(path, config=config, **(torch_options or {}))


def _torch_options(args) -> dict:
    options = {}
    for key in ("forward", "prefix", "head_activation", "head_on", "batch_first"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    return options


def cmd_convert(args):
    model = _open_model(args.src, args.config, _torch_options(args))
    model.save(args.dst)
    print(model.summary())
    print(f"wrote {args.dst}")


def cmd_info(args):
    from .converters import detect_format

    try:
        kind = detect_format(args.file)
    except ValueError:
        kind = "unknown"
    if kind == "torch" and not _torch_options(args):
        from .converters.torch import describe_torch_file

        print(describe_torch_file(args.file))
        return
    print(_open_model(args.file, args.config, _torch_options(args)).summary())


def cmd_run(args):
    model = _open_model(args.file, args.config, _torch_options(args))
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{args.input}: not a readable .npy array ({error})") from None
    y = model(x)
    if isinstance(y, list):
        np.savez(args.output, **{f"y{i}": v for i, v in enumerate(y)})
        print(f"wrote {len(y)} outputs to {args.output} (npz: y0, y1, ...)")
    else:
        np.save(args.output, y)
        print(f"wrote {args.output}: shape {y.shape}, dtype {y.dtype}")


def cmd_demo(args):
    from .demo import run_demo

    run_demo(seed=args.seed)


def cmd_bench(args):
    from .bench import bench_model_file

    bench_model_file(args.file, threads=args.threads, batch_sizes=args.batch_sizes,
                     steps=args.steps, seconds=args.seconds)


def _add_torch_options(parser):
    group = parser.add_argument_group("PyTorch state dicts (what a state dict cannot say)")
    group.add_argument("--forward", help="what forward() does, in order: module prefixes, "
                       "activations and selectors, e.g. gru,last_step,relu,fc")
    group.add_argument("--prefix", help="use the GRU stack under this key prefix")
    group.add_argument("--head-activation", dest="head_activation",
                       help="activation after the Linear head: linear, sigmoid, softmax, ...")
    group.add_argument("--head-on", dest="head_on", choices=["every_step", "last_step"],
                       help="apply the Linear head to every timestep (default) or the last")
    group.add_argument("--time-major", dest="batch_first", action="store_const", const=False,
                       help="the nn.GRU was batch_first=False: inputs (time, batch, features)")
    parser.add_argument("--config", help="Keras weights-only files and TF checkpoints: the "
                                         "model's JSON config (model.to_json())")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gru-infer", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="checkpoint (.keras, .h5, .weights.h5, SavedModel "
                                       "folder, TF checkpoint, .pt) -> weight file")
    p.add_argument("src")
    p.add_argument("dst")
    _add_torch_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="layers, shapes, parameter count and source of a file")
    p.add_argument("file")
    _add_torch_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="run a model on an .npy input, write the output .npy")
    p.add_argument("file")
    p.add_argument("input")
    p.add_argument("output")
    _add_torch_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the bundled example model")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="time a model: streaming step, whole sequence, throughput")
    p.add_argument("file")
    p.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: 1 and all)")
    p.add_argument("--batch-sizes", dest="batch_sizes", default="1,8,64")
    p.add_argument("--steps", type=int, default=100, help="sequence length for whole sequences")
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one clear line, unless --debug
        if args.debug:
            raise
        message = str(error) or type(error).__name__
        print(f"gru-infer: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
