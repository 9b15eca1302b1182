"""OpenVINO (CPU plugin), float32: the same weights as every engine, in the ONNX graphs the
ONNX Runtime peer builds (GRU op, dynamic batch and time), read by OpenVINO's ONNX frontend.

INFERENCE_PRECISION_HINT is set explicitly: on CPUs with AVX512_BF16 or AMX the plugin
otherwise runs bfloat16 silently (openvino_bf16_engine is that row, on purpose).
Dynamic shapes matter: converted with a static time axis the GRU becomes a per-step loop.
Each shape gets its own infer request with its tensors bound once; a stream alternates two
bound requests whose state outputs are the other's state inputs (as the ONNX Runtime peer's
I/O binding does), so a step allocates nothing.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ._lazy import import_error
from .onnxruntime_engine import _graph

NAME = "openvino_f32"
PRECISION = "f32"
TOLERANCE = None  # the harness default: float32 agrees with the reference to ~1e-6


def unavailable_reason():
    return import_error("openvino") or import_error("onnx")


def available() -> bool:
    return unavailable_reason() is None


def _read(core, model_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as f:
            f.write(model_bytes)
        return core.read_model(path)


class Engine:
    def __init__(self, spec, threads, precision=PRECISION):
        import openvino as ov

        self.ov = ov
        self.spec = spec
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self.seq = core.compile_model(_read(core, _graph(spec, False)), "CPU", config)
        self.stream_model = core.compile_model(_read(core, _graph(spec, True)), "CPU", config)
        self.variant = (
            f"OpenVINO {ov.__version__} CPU, precision "
            f"{self.seq.get_property('INFERENCE_PRECISION_HINT')}, "
            f"{self.seq.get_property('INFERENCE_NUM_THREADS')} threads"
        )
        self.requests = {}  # input shape -> (request, output array)

    def run(self, x):
        found = self.requests.get(x.shape)
        if found is None:
            request = self.seq.create_infer_request()
            out = np.empty(x.shape[:2] + (self.spec.output_size,), np.float32)
            request.set_output_tensor(0, self.ov.Tensor(out, shared_memory=True))
            found = self.requests[x.shape] = (request, out)
        request, out = found
        request.set_input_tensor(0, self.ov.Tensor(np.ascontiguousarray(x), shared_memory=True))
        request.infer()
        return out

    def reset(self, batch):
        """Two requests bound once: x, y, and state sets that swap roles every step."""
        spec, ov, compiled = self.spec, self.ov, self.stream_model
        self.x = np.zeros((batch, spec.input_size), np.float32)
        self.y = np.zeros((batch, spec.output_size), np.float32)
        states = [
            [np.zeros((1, batch, layer.hidden_size), np.float32) for layer in spec.layers]
            for _ in range(2)
        ]
        self._states = states
        self.stream_requests = []
        for src, dst in ((0, 1), (1, 0)):
            request = compiled.create_infer_request()
            request.set_tensor("x", ov.Tensor(self.x, shared_memory=True))
            request.set_tensor("y", ov.Tensor(self.y, shared_memory=True))
            for i, (a, b) in enumerate(zip(states[src], states[dst])):
                request.set_tensor(f"h{i}_in", ov.Tensor(a, shared_memory=True))
                request.set_tensor(f"h{i}_out", ov.Tensor(b, shared_memory=True))
            self.stream_requests.append(request)
        self.turn = 0

    def step(self, x_t):
        # Returns the bound output buffer itself (overwritten by the next step).
        self.x[...] = x_t
        self.stream_requests[self.turn].infer()
        self.turn ^= 1
        return self.y


def build(spec, threads):
    return Engine(spec, threads)
