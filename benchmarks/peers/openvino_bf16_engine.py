"""OpenVINO (CPU plugin) in bfloat16: the openvino_f32 peer with INFERENCE_PRECISION_HINT=bf16,
what the plugin picks by itself on CPUs with AVX512_BF16. Weights and activations round to
8 significant bits, so its outputs differ from the float32 reference by ~1e-3."""

from __future__ import annotations

from . import openvino_engine

NAME = "openvino_bf16"
TOLERANCE = 2e-2  # bfloat16 rounding, not a bug

unavailable_reason = openvino_engine.unavailable_reason
available = openvino_engine.available


def build(spec, threads):
    return openvino_engine.Engine(spec, threads, precision="bf16")
