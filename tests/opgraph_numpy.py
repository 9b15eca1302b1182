"""A plain NumPy interpreter of OpGraphs, for tests only.

It runs the op lists that converters/torch_export.py and converters/onnx.py
produce, so the tests can show that an op list carries everything needed to
reproduce the framework's numbers (every argument, every default) before the
mapping onto gru_infer's model description exists.  The GRU itself is
gru_infer.reference.gru_reference.  Written for clarity, not speed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gru_infer.converters._opgraph import OpGraph, Ref
from gru_infer.converters.onnx import gru_node
from gru_infer.converters.torch_export import gru_layers
from gru_infer.reference import activation_function, gru_reference


def evaluate(graph: OpGraph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    env: dict[str, Any] = dict(graph.constants)
    env.update(feeds)
    run = _run_aten if graph.source == "torch.export" else _run_onnx
    for op in graph.ops:
        results = run(op, env, graph)
        for name, value in zip(op.outputs, results):
            if name:
                env[name] = value
    return [np.asarray(env[name]) for name in graph.outputs]


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


# -- torch.export (ATen) --------------------------------------------------------------------

def _run_aten(op, env, graph) -> list:
    a = op.attrs

    def value(name, default=None):
        v = a.get(name, default)
        if isinstance(v, Ref):
            return env[v.name]
        if isinstance(v, list):
            return [env[i.name] if isinstance(i, Ref) else i for i in v]
        return v

    kind = op.op
    if kind == "aten.sym_size.int":
        return [value("self").shape[value("dim")]]
    if kind == "aten.zeros.default":
        return [np.zeros([int(s) for s in value("size")], a.get("dtype") or "float32")]
    if kind == "aten.gru.input":
        return _aten_gru(value("input"), value("hx"), graph, op)
    if kind == "aten.select.int":
        return [np.take(value("self"), value("index"), axis=value("dim"))]
    if kind == "aten.slice.Tensor":
        x, dim = value("self"), value("dim", 0)
        index = [slice(None)] * x.ndim
        index[dim] = slice(value("start"), value("end"), value("step", 1))
        return [x[tuple(index)]]
    if kind == "aten.relu.default":
        return [np.maximum(value("self"), 0)]
    if kind == "aten.sigmoid.default":
        return [1 / (1 + np.exp(-value("self")))]
    if kind == "aten.tanh.default":
        return [np.tanh(value("self"))]
    if kind in ("aten.softmax.int", "aten._softmax.default"):
        return [_softmax(value("self"), value("dim"))]
    if kind in ("aten.log_softmax.int", "aten._log_softmax.default"):
        return [_log_softmax(value("self"), value("dim"))]
    if kind == "aten.linear.default":
        bias = value("bias")
        y = value("input") @ value("weight").T
        return [y if bias is None else y + bias]
    if kind == "aten.embedding.default":
        return [value("weight")[value("indices")]]
    if kind == "aten.dropout.default":
        assert value("train") is False
        return [value("input")]
    if kind == "aten.layer_norm.default":
        x, shape = value("input"), value("normalized_shape")
        axes = tuple(range(-len(shape), 0))
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + value("eps", 1e-5))
        weight, bias = value("weight"), value("bias")
        return [y * (1 if weight is None else weight) + (0 if bias is None else bias)]
    if kind == "aten.conv1d.default":
        return [_conv1d(value("input"), value("weight"), value("bias"),
                        value("stride", [1])[0], value("padding", [0])[0],
                        value("dilation", [1])[0], value("groups", 1))]
    if kind == "aten.permute.default":
        return [np.transpose(value("self"), value("dims"))]
    if kind == "aten.transpose.int":
        return [np.swapaxes(value("self"), value("dim0"), value("dim1"))]
    if kind in ("aten.view.default", "aten.reshape.default"):
        return [np.reshape(value("self"), [int(s) for s in value("size" if "size" in a
                                                                    else "shape")])]
    if kind == "aten.cat.default":
        return [np.concatenate(value("tensors"), axis=value("dim", 0))]
    if kind in ("aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor"):
        x, other = value("self"), value("other")
        if kind == "aten.mul.Tensor":
            return [x * other]
        if kind == "aten.div.Tensor":
            return [x / other]
        alpha = value("alpha", 1)
        return [x + alpha * other if kind == "aten.add.Tensor" else x - alpha * other]
    raise NotImplementedError(kind)


def _aten_gru(x, hx, graph, op) -> list:
    """aten.gru.input through gru_layers (the canonical weights a mapper will use)."""
    if not op.attrs["batch_first"]:
        x = np.swapaxes(x, 0, 1)
    states = []
    for layer in gru_layers(op, graph.constants):
        D = 2 if layer.bidirectional else 1
        x, h_n = gru_reference(x, layer.W, layer.R, layer.B,
                               direction="bidirectional" if layer.bidirectional else "forward",
                               initial_state=hx[layer.index * D:(layer.index + 1) * D])
        states.append(h_n)
    out = x if op.attrs["batch_first"] else np.swapaxes(x, 0, 1)
    return [out, np.concatenate(states, axis=0)]


def _conv1d(x, weight, bias, stride, padding, dilation, groups):
    assert groups == 1
    batch, _, length = x.shape
    out_channels, _, kernel = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    out_length = (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    y = np.zeros((batch, out_channels, out_length), x.dtype)
    for t in range(out_length):
        window = x[:, :, t * stride:t * stride + dilation * (kernel - 1) + 1:dilation]
        y[:, :, t] = np.einsum("bik,oik->bo", window, weight)
    return y if bias is None else y + bias[None, :, None]


# -- ONNX ------------------------------------------------------------------------------------

_ONNX_TYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def _run_onnx(op, env, graph) -> list:
    a = op.attrs
    ins = [env[name] if name else None for name in op.inputs]
    kind = op.op
    if kind == "GRU":
        return _onnx_gru(gru_node(op, graph.constants), ins)
    if kind == "Transpose":
        return [np.transpose(ins[0], a.get("perm"))]
    if kind == "Reshape":
        shape = [int(s) for s in ins[1]]
        if not a.get("allowzero", 0):
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [np.reshape(ins[0], shape)]
    if kind == "Squeeze":
        axes = a.get("axes") if len(ins) < 2 else [int(v) for v in ins[1]]
        return [np.squeeze(ins[0], axis=tuple(axes)) if axes is not None else np.squeeze(ins[0])]
    if kind == "Unsqueeze":
        axes = a.get("axes") if len(ins) < 2 else [int(v) for v in ins[1]]
        out = ins[0]
        rank = out.ndim + len(axes)
        for axis in sorted(ax % rank for ax in axes):
            out = np.expand_dims(out, axis)
        return [out]
    if kind == "Concat":
        return [np.concatenate([np.asarray(v) for v in ins], axis=a["axis"])]
    if kind == "Slice":
        x = ins[0]
        starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
        axes = [int(v) for v in ins[3]] if len(ins) > 3 and ins[3] is not None \
            else list(range(len(starts)))
        steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None \
            else [1] * len(starts)
        index = [slice(None)] * x.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis] = slice(start, end, step)
        return [x[tuple(index)]]
    if kind == "Gather":
        return [np.take(ins[0], ins[1], axis=a.get("axis", 0))]
    if kind == "Shape":
        shape = np.array(ins[0].shape, np.int64)
        return [shape[a.get("start", 0):a.get("end", len(shape))]]
    if kind == "ConstantOfShape":
        fill = a.get("value", np.zeros(1, np.float32))
        return [np.full([int(s) for s in ins[0]], fill.reshape(-1)[0], fill.dtype)]
    if kind == "Expand":
        shape = np.broadcast_shapes(ins[0].shape, tuple(int(s) for s in ins[1]))
        return [np.broadcast_to(ins[0], shape).copy()]
    if kind in ("Identity", "Dropout"):
        return [ins[0]]
    if kind == "Cast":
        return [np.asarray(ins[0]).astype(_ONNX_TYPES[a["to"]])]
    if kind == "Gemm":
        x = ins[0].T if a.get("transA", 0) else ins[0]
        w = ins[1].T if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * (x @ w)
        return [y if len(ins) < 3 or ins[2] is None else y + a.get("beta", 1.0) * ins[2]]
    if kind == "MatMul":
        return [ins[0] @ ins[1]]
    if kind in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[kind]
        return [f(ins[0], ins[1])]
    if kind in ("Sigmoid", "Tanh", "Relu", "Softsign"):
        return [activation_function(kind.lower())(ins[0])]
    if kind == "Softmax":
        return [_softmax(ins[0], a.get("axis", -1))]
    if kind == "LogSoftmax":
        return [_log_softmax(ins[0], a.get("axis", -1))]
    if kind == "Conv":
        pads = a.get("pads", [0, 0])
        assert pads[0] == pads[1]
        return [_conv1d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                        a.get("strides", [1])[0], pads[0], a.get("dilations", [1])[0],
                        a.get("group", 1))]
    if kind == "LayerNormalization":
        x = ins[0]
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * ins[1]
        return [y + ins[2] if len(ins) > 2 and ins[2] is not None else y]
    if kind == "Flatten":
        axis = a.get("axis", 1) % max(ins[0].ndim, 1)
        return [ins[0].reshape(math.prod(ins[0].shape[:axis]), -1)]
    raise NotImplementedError(kind)


def _onnx_gru(gru, ins) -> list:
    x, lens, h0 = ins[0], ins[4] if len(ins) > 4 else None, ins[5] if len(ins) > 5 else None
    D, H = gru.num_directions, gru.hidden_size
    if gru.layout == 0:
        x = np.swapaxes(x, 0, 1)                       # (T, B, I) -> (B, T, I)
        h0 = None if h0 is None else h0
    elif h0 is not None:
        h0 = np.swapaxes(h0, 0, 1)                     # (B, D, H) -> (D, B, H)
    names = (gru.gate_activation, gru.candidate_activation)
    version = next((n.rsplit("_", 1)[1] for n in names if n.startswith("hard_sigmoid_")),
                   "keras3")
    activations = tuple("hard_sigmoid" if n.startswith("hard_sigmoid_") else n for n in names)
    y, h_n = gru_reference(x, gru.W, gru.R, gru.B,
                           linear_before_reset=gru.linear_before_reset,
                           direction=gru.direction, activations=activations,
                           hard_sigmoid=version, initial_state=h0, lengths=lens)
    batch, steps = x.shape[:2]
    y = y.reshape(batch, steps, D, H)                  # (B, T, D, H)
    if gru.layout == 0:
        return [np.transpose(y, (1, 2, 0, 3)), h_n]    # (T, D, B, H), (D, B, H)
    return [y, np.swapaxes(h_n, 0, 1)]                 # (B, T, D, H), (B, D, H)
