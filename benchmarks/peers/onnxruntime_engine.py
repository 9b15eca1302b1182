"""ONNX Runtime (CPU provider): an ONNX graph built with onnx.helper around the GRU op.

The GRU op takes the canonical weights as they are (that form *is* ONNX's):
W (1, 3H, I), R (1, 3H, H), B (1, 6H), gates z, r, h, linear_before_reset=1.
ORT's CPU GRU supports only layout=0 (time-major X (T, B, I), Y (T, D, B, H)),
so the sequence graph transposes batch-first input in and out inside the graph.
"""

from __future__ import annotations

import numpy as np

from ._lazy import import_error

NAME = "onnxruntime"
OPSET = 17  # GRU-14 semantics (layout attribute exists; 0 = time-major), Squeeze/Unsqueeze axes as inputs
IR_VERSION = 8  # old enough for any recent onnxruntime to load


def unavailable_reason():
    return import_error("onnx") or import_error("onnxruntime")


def available() -> bool:
    return unavailable_reason() is None


def _graph(spec, stream: bool):
    """Sequence graph: x (B, T, I) -> y (B, T, O).
    Stream graph: x (B, I), h{i}_in (1, B, H_i) -> y (B, O), h{i}_out (1, B, H_i)."""
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.array([0], np.int64), "axis0"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes, inputs, outputs = [], [], []
    f32 = TensorProto.FLOAT
    if stream:
        inputs.append(helper.make_tensor_value_info("x", f32, ["B", spec.input_size]))
        nodes.append(helper.make_node("Unsqueeze", ["x", "axis0"], ["h_seq0"]))  # (1, B, I): T=1
    else:
        inputs.append(helper.make_tensor_value_info("x", f32, ["B", "T", spec.input_size]))
        nodes.append(helper.make_node("Transpose", ["x"], ["h_seq0"], perm=[1, 0, 2]))
    h = "h_seq0"
    for i, l in enumerate(spec.layers):
        H = l.hidden_size
        init += [numpy_helper.from_array(l.W, f"W{i}"), numpy_helper.from_array(l.R, f"R{i}"),
                 numpy_helper.from_array(l.B, f"B{i}")]
        if stream:
            inputs.append(helper.make_tensor_value_info(f"h{i}_in", f32, [1, "B", H]))
            outputs.append(helper.make_tensor_value_info(f"h{i}_out", f32, [1, "B", H]))
            # At T=1, Y_h (1, B, H) already is the next layer's (T, B, H) input: Y is not produced.
            nodes.append(helper.make_node("GRU", [h, f"W{i}", f"R{i}", f"B{i}", "", f"h{i}_in"],
                                          ["", f"h{i}_out"], hidden_size=H, linear_before_reset=1))
            h = f"h{i}_out"
        else:
            nodes.append(helper.make_node("GRU", [h, f"W{i}", f"R{i}", f"B{i}"], [f"Y{i}"],
                                          hidden_size=H, linear_before_reset=1))
            nodes.append(helper.make_node("Squeeze", [f"Y{i}", "axis1"], [f"h_seq{i + 1}"]))  # (T, B, H)
            h = f"h_seq{i + 1}"
    if spec.dense_W is not None:
        init += [numpy_helper.from_array(np.ascontiguousarray(spec.dense_W.T), "Wd"),
                 numpy_helper.from_array(spec.dense_b, "bd")]
        nodes += [helper.make_node("MatMul", [h, "Wd"], ["logits0"]),
                  helper.make_node("Add", ["logits0", "bd"], ["logits"]),
                  helper.make_node("Sigmoid", ["logits"], ["head"])]
        h = "head"
    if stream:
        nodes.append(helper.make_node("Squeeze", [h, "axis0"], ["y"]))
        outputs.insert(0, helper.make_tensor_value_info("y", f32, ["B", spec.output_size]))
    else:
        nodes.append(helper.make_node("Transpose", [h], ["y"], perm=[1, 0, 2]))
        outputs.insert(0, helper.make_tensor_value_info("y", f32, ["B", "T", spec.output_size]))
    graph = helper.make_graph(nodes, f"{spec.name}_{'stream' if stream else 'seq'}", inputs, outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gru_infer-benchmarks")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


class Engine:
    def __init__(self, spec, threads):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.spec = spec
        self.seq = ort.InferenceSession(_graph(spec, False), opts, providers=providers)
        self.stream_sess = ort.InferenceSession(_graph(spec, True), opts, providers=providers)
        self.bindings = None

    def run(self, x):
        return self.seq.run(["y"], {"x": x})[0]

    def reset(self, batch):
        """Bind every buffer once: x, y, and two state sets that swap roles each step."""
        spec = self.spec
        self.x = np.zeros((batch, spec.input_size), np.float32)
        self.y = np.zeros((batch, spec.output_size), np.float32)
        states = [[np.zeros((1, batch, l.hidden_size), np.float32) for l in spec.layers] for _ in range(2)]
        self._states = states  # keep the buffers alive while ORT holds their pointers
        self.bindings = []
        for src, dst in ((0, 1), (1, 0)):
            io = self.stream_sess.io_binding()
            io.bind_input("x", "cpu", 0, np.float32, list(self.x.shape), self.x.ctypes.data)
            io.bind_output("y", "cpu", 0, np.float32, list(self.y.shape), self.y.ctypes.data)
            for i, a in enumerate(states[src]):
                io.bind_input(f"h{i}_in", "cpu", 0, np.float32, list(a.shape), a.ctypes.data)
            for i, a in enumerate(states[dst]):
                io.bind_output(f"h{i}_out", "cpu", 0, np.float32, list(a.shape), a.ctypes.data)
            self.bindings.append(io)
        self.turn = 0

    def step(self, x_t):
        # Returns the bound output buffer itself (overwritten by the next step): no per-step allocation.
        self.x[...] = x_t
        self.stream_sess.run_with_iobinding(self.bindings[self.turn])
        self.turn ^= 1
        return self.y


def build(spec, threads):
    return Engine(spec, threads)
