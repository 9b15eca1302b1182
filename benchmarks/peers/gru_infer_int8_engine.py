"""gru_infer with int8 GRU and Dense weights (Model.with_precision("int8")): one
scale per output row; on CPUs with VNNI the inputs of each product are quantised
per row and call to 8 bits (vpdpbusd).  Its outputs differ from the float32
reference by ~5e-4 on model M (the report states them)."""

from __future__ import annotations

from . import gru_infer_engine

NAME = "gru_infer_int8"
TOLERANCE = 5e-2  # int8 rounding of weights (and inputs): not a bug (W4: ~1.4e-2 after 200 steps)

unavailable_reason = gru_infer_engine.unavailable_reason
available = gru_infer_engine.available


def build(spec, threads):
    return gru_infer_engine.Engine(spec, threads, precision="int8")
