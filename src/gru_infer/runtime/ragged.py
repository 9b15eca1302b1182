"""Ragged batches: many sequences of different lengths, packed into batches
so that every sequence gets the outputs it would get run alone.

Two packings, and a rule for which one a model allows:

- "lengths": sort by length, pad each batch to its longest sequence and pass
  lengths= (PyTorch packed-sequence semantics).  Every GRU stops at each row's
  own last step (the backward direction starts there), so no output before a
  row's end reads its padding.  Exact when the rest of the model is per-step
  (Dense, Masking, Embedding, merges, normalisation, activations) or causal
  (a causal Conv1D of stride 1).  A Keras mask (Masking, Embedding(mask_zero))
  still masks the steps inside each sequence; the padding is never reached.
- "bucket": only sequences of one length share a batch; no padding at all.
  Exact for every model; used where padding would be read: a go_backwards GRU
  returning sequences, pooling or a non-causal convolution over time, a
  Concatenate/ReduceAny/Select along time, a GRU after RepeatVector (lengths=
  would cut it short), a layer kind this module does not know.

"Exact" means the same function: a row's numbers do not depend on the other
rows or on padding.  They can differ from a batch-1 run in the last bit,
because the core's kernels round differently for different batch sizes (as
BLAS does); a batch packed here gives bit for bit what the same padded batch
gives through Model.__call__(x, lengths=...).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InputError
from ..spec.graph import ModelSpec
from ..spec.layers import Recurrent

STRATEGIES = ("auto", "lengths", "bucket")

# Layer kinds that act on each timestep alone, or on a row with no time axis.
_PER_STEP_KINDS = {"dense", "activation", "identity", "masking", "not_equal", "embedding",
                   "merge", "fill_like", "logical", "batch_normalization",
                   "layer_normalization"}
# Kinds that read across the time axis of a sequence (fine on a row with none).
_ACROSS_TIME_KINDS = {"flatten", "reshape", "repeat_vector", "global_pooling_1d", "pooling_1d"}


def lengths_refusal(spec: ModelSpec) -> Optional[str]:
    """Why padding + lengths= could change some output of this model, or None
    when it is exact."""
    _, reason = _time_axes(spec)
    return reason


def sequence_outputs(spec: ModelSpec) -> list:
    """For each model output: True when it has the input's time axis (first
    per-row axis), False when it has none (a GRU's last output, a state)."""
    has_time, _ = _time_axes(spec)
    return [has_time[ref] for ref in spec.outputs]


def _time_axes(spec: ModelSpec):
    """({value: has the input's time axis first}, why padding is not exact or None).

    Padding at the end of a row is exact when no output before a row's end
    reads a padded step: per-step layers, GRUs stopped by lengths= (the
    backward direction starts at each row's end), causal convolutions.
    Anything that pools, joins, picks or moves along time is not.
    """
    shapes = spec.shapes()
    has_time = {(i.name, 0): True for i in spec.inputs}
    reasons = []
    for node in spec.nodes:
        layer = node.layer
        timed = has_time[node.inputs[0]]
        any_timed = any(has_time[ref] for ref in node.inputs)
        rank = len(shapes[node.inputs[0]])
        kind = layer.kind
        keeps_time = timed  # the usual case: the time axis stays where it is
        where = f"{kind} layer {layer.name!r}"
        if isinstance(layer, Recurrent):
            if not timed:
                reasons.append(f"{where} runs along an axis that is not the input's time "
                               "(after RepeatVector, say), which lengths= would cut short")
            elif layer.go_backwards and layer.return_sequences:
                reasons.append(f"{where} returns its sequence in processing order "
                               "(go_backwards), so padding would shift its outputs")
            # A GRU's sequence runs along its input's time axis, which is the
            # model input's only if its input has it (not after RepeatVector).
            outs = [layer.return_sequences and timed] * layer.state_outputs
            outs += [False] * (layer.output_count - layer.state_outputs)
            keeps_time = None
        elif kind in _PER_STEP_KINDS:
            keeps_time = any_timed
        elif kind in ("any", "concatenate", "select") and any_timed:
            if layer.axis % rank == 0:
                reasons.append(f"{where} works along the time axis")
                keeps_time = False
        elif kind == "expand_dims" and timed and layer.axis % (rank + 1) == 0:
            reasons.append(f"{where} moves the time axis")
            keeps_time = False
        elif kind == "permute" and timed and layer.dims[0] != 1:
            reasons.append(f"{where} moves the time axis")
            keeps_time = False
        elif kind == "conv1d" and timed:
            span = layer.span
            if layer.strides != 1 or layer.pads(1) != (span, 0):
                reasons.append(f"{where} is not causal with stride 1: its outputs near a row's "
                               "end would read the padding")
                keeps_time = False
        elif kind in _ACROSS_TIME_KINDS and any_timed:
            reasons.append(f"{where} works across time")
            keeps_time = False
        elif kind not in ("any", "concatenate", "select", "expand_dims", "permute", "conv1d") \
                and kind not in _ACROSS_TIME_KINDS:
            reasons.append(f"{where}: padding is not known to be exact for this layer kind")
            keeps_time = False
        if keeps_time is not None:
            outs = [bool(keeps_time)] * layer.output_count
        for index, value in enumerate(outs):
            has_time[(layer.name, index)] = value
    return has_time, (reasons[0] if reasons else None)


def choose_strategy(spec: ModelSpec, strategy: str) -> str:
    """The packing to use: strategy itself, or for "auto" the exact one that pads."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    reason = lengths_refusal(spec)
    if strategy == "lengths" and reason is not None:
        raise InputError(f"strategy 'lengths' is not exact for this model: {reason}; use "
                         "'bucket' (or 'auto')")
    if strategy == "auto":
        return "lengths" if reason is None else "bucket"
    return strategy


def as_sequences(seqs, row_ndim: int) -> list:
    """seqs as a list of arrays: a list or tuple of arrays, a 1-D object array
    of arrays (what Ray and pandas hold ragged columns as), or one regular
    array (batch, time, ...) read as that many sequences of one length."""
    if isinstance(seqs, np.ndarray) and seqs.dtype != object:
        if seqs.ndim != row_ndim + 1:
            raise InputError(f"a regular array of sequences must have shape (sequences, time"
                             f"{', features' if row_ndim == 2 else ''}), got {seqs.shape}")
        return list(seqs)
    if isinstance(seqs, np.ndarray):
        if seqs.ndim != 1:
            raise InputError(f"an object array of sequences must be 1-D, got shape {seqs.shape}")
    elif isinstance(seqs, (str, bytes, dict)) or not hasattr(seqs, "__len__"):
        raise InputError(f"sequences must be a list or an array of arrays, got "
                         f"{type(seqs).__name__}")
    return [s if isinstance(s, np.ndarray) else np.asarray(s) for s in seqs]


def check_sequences(seqs: list, row_shape: tuple) -> np.ndarray:
    """Each sequence's length; InputError naming the first one of the wrong shape."""
    features = tuple(row_shape[1:])
    lengths = np.empty(len(seqs), np.int64)
    for i, seq in enumerate(seqs):
        shape = seq.shape
        if len(shape) != len(row_shape) or any(
                e is not None and e != s for e, s in zip(features, shape[1:])):
            want = ", ".join(["time"] + ["any" if e is None else str(e) for e in features])
            raise InputError(f"sequence {i} has shape {shape}; this model takes ({want}) "
                             "per sequence")
        lengths[i] = shape[0]
    if len(seqs) and len(row_shape) > 1:
        first = seqs[0].shape[1:]
        for i, seq in enumerate(seqs):
            if seq.shape[1:] != first:
                raise InputError(f"sequence {i} has {seq.shape[1:]} features per step, "
                                 f"sequence 0 has {first}")
    return lengths


def plan_batches(lengths: np.ndarray, batch_size: int, strategy: str) -> list:
    """Index arrays, one per batch: sorted by length (longest first) and cut
    into batch_size rows; with "bucket", a batch never mixes lengths."""
    order = np.argsort(-lengths, kind="stable")
    if strategy == "lengths":
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    sorted_lengths = lengths[order]
    cuts = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for group in np.split(order, cuts):
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


def predict_ragged(model, seqs, *, batch_size: int = 64, strategy: str = "auto",
                   padded: bool = False, num_threads: Optional[int] = None):
    """Outputs of model for sequences of different lengths; see Model.predict_ragged."""
    spec = model.spec
    if len(spec.inputs) != 1:
        raise InputError(f"predict_ragged takes models with one input; this one has "
                         f"{len(spec.inputs)} ({', '.join(i.name for i in spec.inputs)})")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    chosen = choose_strategy(spec, strategy)
    row_shape = spec.inputs[0].shape
    seqs = as_sequences(seqs, len(row_shape))
    lengths = check_sequences(seqs, row_shape)
    timed = sequence_outputs(spec)
    dtype = np.result_type(*[s.dtype for s in seqs]) if seqs else np.dtype(spec.inputs[0].dtype)
    n = len(seqs)
    results: Optional[list] = None  # per output: a list of per-sequence arrays, or a padded array
    for rows in plan_batches(lengths, batch_size, chosen):
        steps = int(lengths[rows].max())
        x = np.zeros((len(rows), steps) + seqs[rows[0]].shape[1:], dtype)
        for j, i in enumerate(rows):
            x[j, :lengths[i]] = seqs[i]
        call_lengths = lengths[rows] if chosen == "lengths" else None
        if model.time_major:
            x = x.swapaxes(0, 1)
        ys = model(x, lengths=call_lengths, num_threads=num_threads)
        ys = ys if isinstance(ys, list) else [ys]
        if model.time_major:
            ys = [y.swapaxes(0, 1) if y.ndim >= 3 else y for y in ys]
        if results is None:
            results = [_empty_result(y, n, int(lengths.max()), t, padded)
                       for y, t in zip(ys, timed)]
        for out, y, t in zip(results, ys, timed):
            for j, i in enumerate(rows):
                if padded and t:
                    out[i, :lengths[i]] = y[j, :lengths[i]]
                elif padded:
                    out[i] = y[j]
                else:  # a copy: a view would keep the whole batch's output alive
                    out[i] = (y[j, :lengths[i]] if t else y[j]).copy()
    if results is None:  # no sequences
        results = [np.zeros((0, 0)) if padded else [] for _ in spec.outputs]
    results = results if len(results) > 1 else results[0]
    return (results, lengths) if padded else results


def _empty_result(y: np.ndarray, n: int, max_steps: int, timed: bool, padded: bool):
    if not padded:
        return [None] * n
    row = (max_steps,) + y.shape[2:] if timed else y.shape[1:]
    return np.zeros((n,) + row, y.dtype)
