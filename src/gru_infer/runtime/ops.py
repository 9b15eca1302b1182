"""One builder per layer kind: (layer spec, input values, builder) -> output
values, appending the ops that compute them to the program being built.

A value is a buffer of the call's concrete shape (batch first) plus, where
Keras semantics give it one, a (batch, time) uint8 mask buffer.  Whether a
value has a mask is known when the program is built, so masks cost nothing
where a model has none.  Whole sequences and streams use the same builders: a
stream is a program at time 1 whose GRU ops read and write kept states.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..spec import activations
from ..spec.layers import (
    Activation,
    Concatenate,
    Dense,
    Embedding,
    ExpandDims,
    FillLike,
    Identity,
    Logical,
    Masking,
    Merge,
    NotEqual,
    Recurrent,
    ReduceAny,
)
from . import _core
from .extra_ops import EXTRA_BUILDERS, numpy_activation
from .values import Value


def _core_code(name: str):
    """The core's code for a table activation, or None (NumPy runs it)."""
    info = activations.ACTIVATIONS[name]
    return _core.activation_code(name) if info.core else None


# -- GRU -----------------------------------------------------------------------------


def _engines(layer: Recurrent) -> list:
    """[(cells, reverse flags)] run per core call: both directions in one call
    when they agree on every option, else one call each."""
    cells = layer.cells
    if len(cells) == 2 and cells[0].options() == cells[1].options():
        return [(cells, (False, True))]
    if len(cells) == 2:
        return [((cells[0],), (False,)), ((cells[1],), (True,))]
    return [(cells, (layer.go_backwards,))]


def build_recurrent(layer: Recurrent, inputs: list, b) -> list:
    x = inputs[0]
    batch, steps = x.buffer.shape[:2]
    dtype = b.dtype
    ys, lasts, states = [], [], []
    for e, (cells, reverse) in enumerate(_engines(layer)):
        packed = b.packed_gru(layer, e, cells, reverse)
        D, H = len(cells), cells[0].hidden_size
        y = np.zeros((batch, steps, D * H), dtype)
        state = b.state_buffer(layer, e, (D, batch, H))
        before = None
        if state is not None:  # a stream: h0 and h_n are the kept state
            h0, h_n, use_h0 = state, state, True
            if x.mask is not None:
                before = np.empty((batch, H), dtype)
                b.add(_core.CopyOp(state[0], before))
        else:
            h0, h_n, use_h0 = np.zeros((D, batch, H), dtype), np.zeros((D, batch, H), dtype), False
            b.initial_state_buffers.setdefault(layer.name, []).append(h0)
        workspace = np.empty(packed.workspace_bytes(batch, steps, b.num_threads), np.uint8)
        gru = _core.GRUOp(packed, x.buffer, y, h_n, h0, workspace, b.num_threads, x.mask,
                          b.lengths, use_h0)
        b.add_gru(gru, layer.name, e)
        if before is not None:
            b.add(_core.MaskedStartOp(y, before, x.mask))
        states.append(h_n)
        if layer.zero_masked_outputs and x.mask is not None and layer.return_sequences:
            b.add(_core.ZeroMaskedOp(y, x.mask))
        if not layer.return_sequences:
            last = np.zeros((batch, D * H), dtype)
            b.add(_core.LastStepOp(gru, y, h_n, last, reverse))
            lasts.append(last)
        ys.append(y)
    b.final_states[layer.name] = states

    if layer.return_sequences:
        y = _joined(ys, b, axis=2)
        if layer.go_backwards:
            flipped = np.empty_like(y)
            b.add(_core.ReverseTimeOp(y, flipped))
            y = flipped
        outputs, mask = [y], x.mask
    else:
        outputs, mask = [_joined(lasts, b, axis=1)], None
    if len(layer.cells) == 2 and layer.merge_mode != "concat":
        whole = outputs[0]
        H = layer.hidden_sizes[0]
        first = np.empty(whole.shape[:-1] + (H,), dtype)
        second = np.empty_like(first) if layer.merge_mode is None else None
        b.add(_core.HalvesOp(whole, layer.merge_mode, first, second))
        outputs = [first] if second is None else [first, second]
    values = [Value(o, mask) for o in outputs]
    if layer.return_state:
        values += [Value(state[d]) for state in states for d in range(state.shape[0])]
    return values


def _joined(parts: list, b, axis: int) -> np.ndarray:
    """One buffer of the parts side by side on their last axis."""
    if len(parts) == 1:
        return parts[0]
    out = np.empty(parts[0].shape[:-1] + (sum(p.shape[-1] for p in parts),), parts[0].dtype)
    b.add(_core.ConcatOp(parts, out, int(np.prod(out.shape[:-1]))))
    return out


# -- per-step layers -----------------------------------------------------------------


def build_dense(layer: Dense, inputs: list, b) -> list:
    x = inputs[0]
    out = np.empty(x.buffer.shape[:-1] + (layer.units,), b.dtype)
    code = _core_code(layer.activation)
    dense = b.packed_dense(layer, code if code is not None else _core.activation_code("linear"))
    b.add(_core.DenseOp(dense, x.buffer, out, b.num_threads))
    if code is None:
        b.add(numpy_activation(layer.activation, out))
    return [Value(out, x.mask)]


def build_activation(layer: Activation, inputs: list, b) -> list:
    x = inputs[0]
    out = np.empty_like(x.buffer)
    code = _core_code(layer.activation)
    if code is not None:
        b.add(_core.ActivationOp(x.buffer, out, code))
    else:
        b.add(_core.CopyOp(x.buffer, out))
        b.add(numpy_activation(layer.activation, out))
    return [Value(out, x.mask)]


def build_identity(layer: Identity, inputs: list, b) -> list:
    return [inputs[0]]


def build_masking(layer: Masking, inputs: list, b) -> list:
    x = inputs[0]
    out = np.empty_like(x.buffer)
    mask = np.empty(x.buffer.shape[:2], np.uint8)
    b.add(_core.MaskingOp(x.buffer, out, mask, x.mask, layer.mask_value))
    return [Value(out, mask)]


def build_embedding(layer: Embedding, inputs: list, b) -> list:
    ids = inputs[0]
    table = b.cast(layer.table)
    out = np.empty(ids.buffer.shape + (table.shape[1],), b.dtype)
    mask = np.empty(ids.buffer.shape[:2], np.uint8) if layer.mask_zero else None
    b.add(_core.EmbeddingOp(ids.buffer, table, out, mask, layer.name))
    return [Value(out, _and_masks([mask, ids.mask], b))]


def build_not_equal(layer: NotEqual, inputs: list, b) -> list:
    x = inputs[0].buffer
    out = np.empty(x.shape, np.bool_)
    value = layer.value

    def run():
        np.not_equal(x, value, out=out)
    b.add(_core.PyOp(run))
    return [Value(out)]


def build_any(layer: ReduceAny, inputs: list, b) -> list:
    x = inputs[0].buffer
    axis = layer.axis + 1 if layer.axis >= 0 else layer.axis  # per-row axis -> with batch
    out = np.empty(np.any(np.zeros(x.shape, bool), axis=axis, keepdims=layer.keepdims).shape,
                   np.bool_)
    keepdims = layer.keepdims

    def run():
        np.any(x, axis=axis, keepdims=keepdims, out=out)
    b.add(_core.PyOp(run))
    return [Value(out)]


# -- merges ----------------------------------------------------------------------------


def _and_masks(masks: list, b) -> Optional[np.ndarray]:
    """The and of the masks that exist (Keras 2 merges), or None."""
    present = [m for m in masks if m is not None]
    if len(present) <= 1:
        return present[0] if present else None
    out = np.empty_like(present[0])
    b.add(_core.MaskAndOp(present, out))
    return out


def _or_masks(masks: list, b) -> np.ndarray:
    """The or of masks, all present (Keras 3 merges)."""
    out = np.empty_like(masks[0])

    def run():
        np.copyto(out, masks[0])
        for m in masks[1:]:
            np.bitwise_or(out, m, out=out)
    b.add(_core.PyOp(run))
    return out


def _merged_mask(layer, masks: list, b) -> Optional[np.ndarray]:
    if all(m is None for m in masks):
        return None
    if layer.mask_semantics == "keras2":
        return _and_masks(masks, b)
    if any(m is None for m in masks):  # Keras 3: no mask once an input has none
        return None
    return _or_masks(masks, b)


def _keras3_masked_merge(op: str, values: list, out: np.ndarray, b) -> None:
    """Keras 3's Multiply / Maximum / Minimum when inputs carry masks: masked
    inputs are replaced (by 1 in a product, by the other inputs in max/min)."""
    buffers = [v.buffer for v in values]
    masks = [None if v.mask is None else v.mask.view(bool)[..., None] for v in values]

    def run():
        if op == "multiply":
            result = np.ones_like(out)
            for x, m in zip(buffers, masks):
                result *= x if m is None else np.where(m, x, 1)
            if all(m is not None for m in masks):
                result = np.where(np.logical_or.reduce(masks), result, 0)
        else:
            pick = np.maximum if op == "maximum" else np.minimum
            result, seen = buffers[0], masks[0]
            for x, m in zip(buffers[1:], masks[1:]):
                if m is not None:
                    x = np.where(m, x, result)
                if seen is not None:
                    result = np.where(seen, result, x)
                seen = None if seen is None or m is None else seen | m
                result = pick(result, x)
        np.copyto(out, result)
    b.add(_core.PyOp(run))


def build_merge(layer: Merge, inputs: list, b) -> list:
    out = np.empty_like(inputs[0].buffer)
    masked = any(v.mask is not None for v in inputs)
    if layer.mask_semantics == "keras3" and masked and layer.op in ("multiply", "maximum", "minimum"):
        _keras3_masked_merge(layer.op, inputs, out, b)
    else:
        b.add(_core.MergeOp([v.buffer for v in inputs], out, layer.op))
    return [Value(out, _merged_mask(layer, [v.mask for v in inputs], b))]


def build_concatenate(layer: Concatenate, inputs: list, b) -> list:
    buffers = [v.buffer for v in inputs]
    rank = buffers[0].ndim
    axis = (layer.axis % (rank - 1)) + 1  # per-row axis -> with batch
    shape = list(buffers[0].shape)
    shape[axis] = sum(x.shape[axis] for x in buffers)
    out = np.empty(shape, buffers[0].dtype)
    if len(buffers) == 1:
        return [inputs[0]]
    b.add(_core.ConcatOp(buffers, out, int(np.prod(shape[:axis]))))
    masks = [v.mask for v in inputs]
    if all(m is None for m in masks):
        return [Value(out)]
    if axis == 1 and rank >= 3:  # joined in time: the masks are joined in time too
        parts = [m if m is not None else np.ones(x.shape[:2], np.uint8)
                 for m, x in zip(masks, buffers)]
        mask = np.empty((shape[0], shape[1]), np.uint8)
        b.add(_core.ConcatOp(parts, mask, shape[0]))
        return [Value(out, mask)]
    if layer.mask_semantics == "keras3":  # an unmasked input counts as all valid, then or
        if any(m is None for m in masks):
            return [Value(out, np.ones(shape[:2], np.uint8))]
        return [Value(out, _or_masks(masks, b))]
    return [Value(out, _and_masks(masks, b))]


def build_expand_dims(layer: ExpandDims, inputs: list, b) -> list:
    x = inputs[0].buffer
    axis = layer.axis + 1 if layer.axis >= 0 else layer.axis  # per-row axis -> with batch
    return [Value(np.expand_dims(x, axis))]  # a view


def build_fill_like(layer: FillLike, inputs: list, b) -> list:
    return [Value(np.full(inputs[0].buffer.shape, layer.value, np.dtype(layer.dtype_name)))]


def build_logical(layer: Logical, inputs: list, b) -> list:
    x, y = (v.buffer for v in inputs)
    out = np.empty(np.broadcast_shapes(x.shape, y.shape), np.bool_)
    function = np.logical_or if layer.op == "or" else np.logical_and
    b.add(_core.PyOp(lambda: function(x, y, out=out)))
    return [Value(out)]


BUILDERS = {
    "gru": build_recurrent,
    "dense": build_dense,
    "activation": build_activation,
    "identity": build_identity,
    "masking": build_masking,
    "embedding": build_embedding,
    "not_equal": build_not_equal,
    "any": build_any,
    "merge": build_merge,
    "concatenate": build_concatenate,
    "expand_dims": build_expand_dims,
    "fill_like": build_fill_like,
    "logical": build_logical,
    **EXTRA_BUILDERS,
}
