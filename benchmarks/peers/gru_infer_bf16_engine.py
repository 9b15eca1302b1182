"""gru_infer with bfloat16 GRU and Dense weights (Model.with_precision("bfloat16")):
float32 sums; on CPUs with AVX512_BF16 the inputs of each product are rounded to
bfloat16 too (vdpbf16ps).  Its outputs differ from the float32 reference by
~2e-4 on model M (the report states them); the row beside OpenVINO's bf16 one."""

from __future__ import annotations

from . import gru_infer_engine

NAME = "gru_infer_bf16"
TOLERANCE = 2e-2  # bfloat16 rounding of weights (and inputs), as OpenVINO bf16: not a bug

unavailable_reason = gru_infer_engine.unavailable_reason
available = gru_infer_engine.available


def build(spec, threads):
    return gru_infer_engine.Engine(spec, threads, precision="bfloat16")
