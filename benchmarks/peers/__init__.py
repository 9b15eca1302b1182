"""One small module per engine, all with the same interface.

Each module defines:
  NAME                      short engine name used in the report
  TOLERANCE (optional)      max abs error against the reference before the report flags a
                            mismatch (default: benchmarks.worker.MISMATCH_TOL)
  available() -> bool       False when its framework cannot be imported (the run skips it)
  unavailable_reason() -> str
  build(spec, threads)      an engine for a workloads.ModelSpec (threads 0: the engine's own
                            default, as a user who sets nothing gets it), with
      .run(x)               x (batch, time, I) float32 -> y (batch, time, O); fresh zero state
      .reset(batch)         start a stream: zero state for `batch` rows
      .step(x_t)            x_t (batch, I) -> y_t (batch, O); state carried to the next step
Frameworks are imported lazily inside build(), so importing this package is cheap.
"""

from importlib import import_module

# gru_infer first: every ratio in the report is relative to it.
MODULES = ("gru_infer_engine", "gru_infer_bf16_engine", "gru_infer_int8_engine", "numpy_reference",
           "torch_engine", "onnxruntime_engine", "openvino_engine", "openvino_bf16_engine")


def load_all():
    return [import_module(f"{__name__}.{m}") for m in MODULES]
