"""A model's description as text: what `Model.summary()` and `gru-infer info` show."""

from __future__ import annotations

import numpy as np

from .graph import ModelSpec
from .layers import Recurrent


def _shape(shape, time_major=False, batch=True) -> str:
    dims = ["?" if s is None else str(s) for s in shape]
    if batch:
        dims = (dims[:1] + ["batch"] + dims[1:]) if time_major else ["batch"] + dims
    return "(" + ", ".join(dims) + ")"


def _layer_details(layer) -> str:
    if isinstance(layer, Recurrent):
        cell = layer.cells[0]
        parts = [f"units {'/'.join(map(str, layer.hidden_sizes))}",
                 "bidirectional" if len(layer.cells) == 2 else
                 ("go_backwards" if layer.go_backwards else "forward"),
                 "reset_after" if cell.linear_before_reset else "reset_before",
                 f"{cell.activations[0]}/{cell.activations[1]}",
                 "sequences" if layer.return_sequences else "last step"]
        if len(layer.cells) == 2:
            parts.append(f"merge {layer.merge_mode}")
        if layer.return_state:
            parts.append("return_state")
        return ", ".join(parts)
    config = layer.config()
    return ", ".join(f"{k}={v}" for k, v in config.items())


def rows(spec: ModelSpec) -> list:
    """One dict per layer: name, kind, inputs, output shapes, parameters, details."""
    shapes = spec.shapes()
    out = []
    for node in spec.nodes:
        layer = node.layer
        out.append({
            "name": layer.name,
            "kind": layer.kind,
            "inputs": [f"{s}[{i}]" if i else s for s, i in node.inputs],
            "outputs": [_shape(shapes[(layer.name, i)], spec.time_major)
                        for i in range(layer.output_count)],
            "parameters": sum(int(np.size(t)) for t in layer.tensors().values()),
            "details": _layer_details(layer),
        })
    return out


def summary(spec: ModelSpec) -> str:
    """An aligned table of the model's layers, then its inputs, outputs and source."""
    table = rows(spec)
    head = ("layer", "kind", "reads", "output shape", "params", "")
    lines = [head] + [(r["name"], r["kind"], ", ".join(r["inputs"]), " ".join(r["outputs"]),
                       f"{r['parameters']:,}", r["details"]) for r in table]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head) - 1)]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(line[:-1], widths)) + "  " + line[-1]
            for line in lines]
    source = " ".join(str(spec.source[k]) for k in ("framework", "version", "format")
                      if spec.source.get(k)) or "unknown"
    inputs = ", ".join(f"{i.name} {_shape(i.shape, spec.time_major)} {i.dtype}"
                       for i in spec.inputs)
    outputs = ", ".join((f"{s}[{i}]" if i else s) + " " + _shape(shape, spec.time_major)
                        for (s, i), shape in zip(spec.outputs, spec.output_shapes()))
    text = [f"gru_infer model: {spec.parameter_count:,} parameters, {spec.dtype} compute"
            + ("" if spec.precision == "native" else f", {spec.precision} weights")
            + f", from {source}"] + [t.rstrip() for t in text]
    text += [f"inputs:  {inputs}", f"outputs: {outputs}"]
    if spec.source.get("forward"):
        assumed = " (assumed: no forward= was given)" if spec.source.get("forward_assumed") else ""
        text.append(f"forward: {spec.source['forward']}{assumed}")
    return "\n".join(text)
