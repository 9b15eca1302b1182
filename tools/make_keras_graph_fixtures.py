#!/usr/bin/env python3
"""Generate Keras functional-graph and extra-layer fixtures for gru_infer.

Two directories (relative to the repo root), each with its own manifest.json
and README.md:

* ``tests/fixtures/keras_graph/``  functional graphs: several inputs, merge
  layers, several outputs, masks through merges, streamable graphs;
* ``tests/fixtures/keras_layers/`` layers users put around GRUs: Conv1D,
  pooling, RepeatVector, global pooling, Flatten/Reshape/Permute,
  BatchNormalization, LayerNormalization, and Lambda / custom layers that
  gru_infer must refuse.

Needs TensorFlow + tf_keras (Keras 2) + Keras 3; run it with its own
virtualenv, never with the project's interpreter:

    python3 -m venv /work/venvs/kfix
    /work/venvs/kfix/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py
    /work/venvs/kfix/bin/python tools/make_keras_graph_fixtures.py

It reuses the helpers of ``tools/make_keras_fixtures.py`` (imported as a
module; that script's own fixtures are not touched): seeded random values for
every weight, each file reloaded in the framework that wrote it and compared
(rtol = atol = 1e-5) before it is kept, one ``build(K)`` per model for both
Keras 2 (``NAME_tf2``, legacy ``.h5``) and Keras 3 (``NAME_k3``, ``.keras``).

NPZ per fixture: ``x`` or ``x0``, ``x1``, ... (model input order; float32, or
int32 token ids), ``y`` or ``y0``, ``y1``, ... (model output order), and for
some fixtures ``m_*`` arrays: boolean masks (batch, time) documented in the
manifest entry's ``npz_extra``.

The READMEs are hand-written except the blocks between the
``<!-- BEGIN GENERATED ... -->`` / ``<!-- END GENERATED ... -->`` markers
(fixture table, layer reference), which every run rewrites.

Usage: make_keras_graph_fixtures.py [--only NAME[,NAME...]] [--out DIR]
  --out DIR writes DIR/keras_graph and DIR/keras_layers instead.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import re
import sys
import zipfile
from pathlib import Path

# Two shared cores: keep TensorFlow to one thread (also keeps runs bit-stable).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_keras_fixtures as mk
from make_keras_fixtures import h5py, k2, k3, np, tf

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "tests" / "fixtures"  # --out replaces it
GRAPH, LAYERS = "keras_graph", "keras_layers"

ONLY: set[str] | None = None
FIXTURES: dict[str, list[dict]] = {GRAPH: [], LAYERS: []}
CURRENT = GRAPH  # the directory the make_* function being run writes into


def out_dir(which: str | None = None) -> Path:
    return ROOT / (which or CURRENT)


def use_dir(which: str) -> None:
    """Point this script and the imported helpers (mk.OUT) at one directory."""
    global CURRENT
    CURRENT = which
    mk.OUT = out_dir(which)
    mk.OUT.mkdir(parents=True, exist_ok=True)


def wanted(name: str) -> bool:
    return ONLY is None or name in ONLY


def as_inputs(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def npz_names(prefix: str, n: int) -> list[str]:
    return [prefix] if n == 1 else [f"{prefix}{i}" for i in range(n)]


def model_io_names(model):
    ins = [t.name.split(":")[0] for t in model.inputs]
    # Keras 3 Sequential has no output_names: its one output is the last layer's
    outs = list(getattr(model, "output_names", None) or [model.layers[-1].name])
    return ins, outs


def record(K, model, name, files, fmt, description, covers, x, ys, *, streamable,
           stream_note, expect, refuse_reason, npz_extra, **extra):
    """Write NAME.npz and append a manifest entry for the current directory."""
    xs = as_inputs(x)
    in_keys, out_keys = npz_names("x", len(xs)), npz_names("y", len(ys))
    arrays = dict(zip(in_keys, xs))
    arrays.update({k: y.astype(np.float32) for k, y in zip(out_keys, ys)})
    arrays.update(npz_extra)
    np.savez(out_dir() / f"{name}.npz", **arrays)
    in_names, out_names = model_io_names(model)
    flavor = mk.FLAVOR[K]
    entry = {
        "name": name,
        "files": list(files) + [f"{name}.npz"],
        "writer": flavor.writer,
        "keras_version": k2.__version__ if K is k2 else k3.__version__,
        "keras_major": 2 if K is k2 else 3,
        "format": fmt,
        "format_id": mk.FORMAT_IDS[fmt],
        "description": description,
        "covers": covers,
        "inputs": [{"name": key, "keras_name": kn, "shape": list(a.shape), "dtype": str(a.dtype)}
                   for key, kn, a in zip(in_keys, in_names, xs)],
        "outputs": [{"name": key, "keras_name": kn, "shape": list(y.shape)}
                    for key, kn, y in zip(out_keys, out_names, ys)],
        "streamable": streamable,
        "stream_note": stream_note,
        "expect": expect,
    }
    if refuse_reason:
        entry["refuse_reason"] = refuse_reason
    if npz_extra:
        entry["npz_extra"] = {k: NPZ_DOC[k] for k in npz_extra}
    entry.update({k: v for k, v in extra.items() if v not in (None, "", [])})
    FIXTURES[CURRENT].append(entry)
    size = sum((out_dir() / f).stat().st_size for f in entry["files"])
    print(f"  wrote {CURRENT}/{name}: {entry['files']} ({size / 1024:.1f} KiB)")


# Extra npz arrays: boolean masks (batch, time), True = valid step.
NPZ_DOC = {
    "m_x": "Keras mask of the input",
    "m_x0": "Keras mask of input x0",
    "m_x1": "Keras mask of input x1",
    "m_cat_time": "mask of the time-concatenated sequence (checked: the GRU after it "
                  "skipped exactly these steps)",
    "m_cat": "mask after the Concatenate (checked on the GRU after it): Keras 2 m_x0 AND "
             "m_x1, Keras 3 m_x0 OR m_x1",
    "m_add_ab": "mask the GRU after Add[a,b] used (checked): Keras 2 m_x0 AND m_x1, "
                "Keras 3 m_x0 OR m_x1",
    "m_cat_ac": "mask the GRU after Concatenate[a,c] used (checked): Keras 2 m_x0, "
                "Keras 3 all valid",
    "m_add_ac": "mask the GRU after Add[a,c] used (checked): Keras 2 m_x0, Keras 3 no "
                "mask (all valid)",
}


def fixture(K, name, build, make_x, description, covers, *, streamable, stream_note,
            expect="numbers", refuse_reason=None, scale=0.5, prepare=None,
            save=mk.save_model, check=None, **extra):
    """Build one model with Keras module K, randomize every weight, predict
    make_x(rng), run check(model, x, ys) (asserts that the fixture really
    exercises what it claims; may return extra npz arrays), save + reload-check
    the file(s) and record them.  The rng draws happen in the order weights,
    prepare(model, rng), input."""
    if not wanted(name):
        return
    mk.fresh(K)
    model = build(K)
    rng = mk.rng_for(name)
    mk.randomize(model, rng, scale=scale)
    if prepare is not None:
        prepare(model, rng)
    x = make_x(rng)
    ys = mk.predict(model, x)
    npz_extra = (check(K, model, x, ys) if check else None) or {}
    files, fmt = save(K, model, name, x, ys)
    record(K, model, name, files, fmt, description, covers, x, ys, streamable=streamable,
           stream_note=stream_note, expect=expect, refuse_reason=refuse_reason,
           npz_extra=npz_extra, **extra)


def both(base, build, make_x, description, covers, **kw):
    """The fixture written by Keras 3 (.keras) and by Keras 2 (.h5)."""
    for K in (k3, k2):
        fixture(K, mk.named(base, K), build, make_x, description, covers, **kw)


def keras2_cannot(build, match: str) -> str:
    """Check that tf_keras fails to build the model and return its message."""
    mk.fresh(k2)
    try:
        build(k2)
    except Exception as e:  # noqa: BLE001  (whatever tf_keras raises)
        msg = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        assert match in msg, msg
        return msg
    raise AssertionError("tf_keras unexpectedly builds this model")


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def with_masked_steps(x, value, spans):
    """Set whole timesteps to the mask value: spans = [(row, start, stop), ...]."""
    x = x.copy()
    for row, a, b in spans:
        x[row, a:b] = value
    return x


def valid(x, value=0.0):
    """Keras Masking rule: a step is valid when any feature differs from value."""
    return np.any(x != value, axis=-1)


def valid_steps_seen(seq):
    """Which steps a GRU(return_sequences=True) treated as valid: a masked step
    repeats the previous output (zeros before the first valid step); with random
    weights a valid step always changes it."""
    prev = np.concatenate([np.zeros_like(seq[:, :1]), seq[:, :-1]], axis=1)
    return np.any(seq != prev, axis=-1)


def sub_output(K, model, layer_name, x):
    """Output of one layer of a functional model, run on x."""
    sub = K.Model(model.inputs, model.get_layer(layer_name).output)
    return mk.predict(sub, x)[0]


def assert_mask(what, got, want):
    got, want = np.asarray(got, bool), np.asarray(want, bool)
    if not np.array_equal(got, want):
        raise AssertionError(f"{what}: GRU saw valid steps\n{got.astype(int)}\n"
                             f"expected\n{want.astype(int)}")


# --------------------------------------------------------------------------
# savers
# --------------------------------------------------------------------------
def save_unsafe(K, model, name, x, ys):
    """Full model (Lambda / custom layer); the Keras 3 reload needs
    safe_mode=False for a Python lambda."""
    fname = name + mk.FLAVOR[K].ext
    path = mk.out_path(fname)
    if K is k2:
        model.save(str(path), save_format="h5")
        re_ = k2.models.load_model(str(path), compile=False)
    else:
        model.save(str(path))
        re_ = k3.models.load_model(str(path), compile=False, safe_mode=False)
    mk.check_close(fname, mk.predict(re_, x), ys)
    return [fname], mk.FLAVOR[K].fmt


# ==========================================================================
# keras_graph
# ==========================================================================
MERGE_NOTE_K2 = ("tf_keras: Add/Subtract/Multiply/Average/Maximum/Minimum output mask = "
                 "AND of the inputs' masks, unmasked inputs ignored (None if none has one); "
                 "Concatenate = AND too (an unmasked input counts as all-valid); values are "
                 "the plain op")
MERGE_NOTE_K3 = ("keras 3: output mask = OR of the inputs' masks, and None as soon as one "
                 "input has no mask (Concatenate: an unmasked input counts as all-valid, "
                 "so the OR is all-valid); Multiply/Maximum/Minimum also change values at "
                 "masked steps (see README)")


def make_merges():
    """Every merge layer; split in two models to keep each file small."""
    def build_seq(K):
        L = K.layers
        x0 = K.Input(shape=(None, 4), name="left")
        x1 = K.Input(shape=(None, 3), name="right")
        a = L.GRU(6, return_sequences=True, name="gru_a")(x0)
        b = L.GRU(6, return_sequences=True, name="gru_b")(x1)
        c = L.GRU(6, return_sequences=True, reset_after=False, name="gru_c")(x0)
        outs = [
            L.Concatenate(name="cat")([a, b]),
            L.Concatenate(axis=2, name="cat_axis2_3in")([a, x0, b]),
            L.Add(name="add_3in")([a, b, c]),
            L.Subtract(name="sub")([a, b]),
            L.Multiply(name="mul")([a, b]),
            L.Average(name="avg_3in")([a, b, c]),
            L.Maximum(name="max")([a, b]),
            L.Minimum(name="min")([a, c]),
        ]
        return K.Model([x0, x1], outs, name="merges_seq")

    def build_vec(K):
        L = K.layers
        x0 = K.Input(shape=(None, 4), name="left")
        x1 = K.Input(shape=(None, 3), name="right")
        la = L.GRU(5, name="gru_last_a")(x0)
        lb = L.GRU(5, name="gru_last_b")(x1)
        y0 = L.Dense(3, name="head_cat")(L.Concatenate(name="cat")([la, lb]))
        y1 = L.Dense(2, activation="softmax", name="head_mul")(L.Multiply(name="mul")([la, lb]))
        y2 = L.Subtract(name="sub")([lb, la])
        y3 = L.Maximum(name="max_3in")([la, lb, L.Dense(5, name="proj")(lb)])
        return K.Model([x0, x1], [y0, y1, y2, y3], name="merges_vec")

    def inputs(rng):
        return [mk.randn(rng, 3, 6, 4), mk.randn(rng, 3, 6, 3)]

    covers_seq = [("every merge layer after GRU sequences: Concatenate, Add, Subtract, "
                  "Multiply, Average, Maximum, Minimum"),
                  "merges of three inputs (Add, Average, Concatenate incl. a raw model input)",
                  "Concatenate axis -1 and axis 2 (the same axis, written differently)",
                  "two inputs, eight outputs"]
    covers_vec = [("merges of last-step GRU vectors (Concatenate, Multiply, Subtract with "
                  "swapped operands, three-input Maximum)"), "Dense heads after merges",
                  "two inputs, four outputs"]
    note = "no masks here: every merge is its plain element-wise op"
    both("merges_seq", build_seq, inputs,
         "Two inputs (left (B,T,4), right (B,T,3)); GRU(6, seq) a, b, c (c reset_after="
         "False); outputs Concatenate(-1)[a,b], Concatenate(axis=2)[a,left,b], "
         "Add[a,b,c], Subtract[a,b], Multiply[a,b], Average[a,b,c], Maximum[a,b], "
         "Minimum[a,c]", covers_seq, streamable=True,
         stream_note="every layer works one timestep at a time", note=note)
    vec_desc = ("Two inputs (left (B,T,4), right (B,T,3)); GRU(5) last_a, last_b (last "
                "step); outputs Dense(3)(Concatenate[a,b]), Dense(2, softmax)(Multiply[a,b]), "
                "Subtract[b,a], Maximum[a, b, Dense(5)(b)]")
    both("merges_vec", build_vec, inputs, vec_desc, covers_vec, streamable=True,
         stream_note="every layer works per step; the last-step GRUs' outputs are their "
                     "state after the last step", note=note)
    for K in (k3, k2):
        fixture(K, mk.named("merges_vec_weights", K), build_vec, inputs,
                "merges_vec as a weights-only file + model.to_json(): " + vec_desc,
                covers_vec[:1] + [("weights-only + JSON config of a multi-input "
                                  "functional graph")],
                streamable=True, stream_note="as merges_vec", save=mk.save_weights_only)


def make_concat_time():
    """Concatenate(axis=1): joining two sequences along time."""
    def build_plain(K):
        L = K.layers
        x0 = K.Input(shape=(None, 3), name="first")
        x1 = K.Input(shape=(None, 3), name="second")
        a = L.GRU(4, return_sequences=True, name="gru_a")(x0)
        b = L.GRU(4, return_sequences=True, name="gru_b")(x1)
        t = L.Concatenate(axis=1, name="cat_time")([a, b])
        h = L.GRU(5, name="gru_join")(t)
        return K.Model([x0, x1], [L.Dense(2, name="head")(h), t], name="concat_time")

    def build_masked(K, second_masked=True):
        L = K.layers
        x0 = K.Input(shape=(None, 3), name="first")
        x1 = K.Input(shape=(None, 3), name="second")
        a = L.GRU(4, return_sequences=True, name="gru_a")(L.Masking(0.0, name="mask_a")(x0))
        s = L.Masking(-1.0, name="mask_b")(x1) if second_masked else x1
        b = L.GRU(4, return_sequences=True, name="gru_b")(s)
        t = L.Concatenate(axis=1, name="cat_time")([a, b])
        seq = L.GRU(5, return_sequences=True, name="gru_join_seq")(t)
        last = L.GRU(3, name="gru_join_last")(t)
        return K.Model([x0, x1], [seq, L.Dense(2, name="head")(last)],
                       name="concat_time_masked")

    def plain_inputs(rng):
        return [mk.randn(rng, 3, 5, 3), mk.randn(rng, 3, 4, 3)]

    def masked_inputs(rng, second_masked=True):
        x0 = with_masked_steps(mk.randn(rng, 4, 5, 3), 0.0, [(0, 3, 5), (1, 1, 3), (2, 0, 2)])
        x1 = mk.randn(rng, 4, 4, 3)
        if second_masked:
            x1 = with_masked_steps(x1, -1.0, [(0, 0, 1), (1, 3, 4), (3, 1, 3)])
        return [x0, x1]

    def check_masked(second_masked):
        def check(K, model, x, ys):
            m0 = valid(x[0], 0.0)
            m1 = valid(x[1], -1.0) if second_masked else np.ones(x[1].shape[:2], bool)
            want = np.concatenate([m0, m1], axis=1)
            assert_mask("gru_join_seq", valid_steps_seen(ys[0]), want)
            extra = {"m_x0": m0, "m_x1": m1} if second_masked else {"m_x0": m0}
            return {**extra, "m_cat_time": want}
        return check

    both("concat_time", build_plain, plain_inputs,
         "Inputs T=5 and T=4 -> GRU(4, seq) each -> Concatenate(axis=1) (time, T=9) "
         "[y1] -> GRU(5) -> Dense(2) [y0]",
         ["Concatenate along time (axis=1) of two GRU sequences of different lengths",
          "GRU over the joined sequence"],
         streamable=False,
         stream_note="the joined sequence holds all of the first input's steps before "
                     "the second's: nothing can run per step")
    both("concat_time_masked", build_masked, masked_inputs,
         "Masking(0.0) on first (T=5), Masking(-1.0) on second (T=4) -> GRU(4, seq) "
         "each -> Concatenate(axis=1) -> GRU(5, seq) [y0] and GRU(3)->Dense(2) [y1]",
         [("Concatenate along time of two masked sequences: the masks are "
          "concatenated along time (both Keras versions)"),
          "Masking with mask value -1.0 (masked steps of its output are 0.0)"],
         streamable=False, stream_note="as concat_time", check=check_masked(True))
    if not wanted("concat_time_mixed_k3"):
        return
    msg = keras2_cannot(functools.partial(build_masked, second_masked=False),
                        "Dimension 0 in both shapes must be equal")
    fixture(k3, "concat_time_mixed_k3", functools.partial(build_masked, second_masked=False),
            functools.partial(masked_inputs, second_masked=False),
            "Keras 3 only: as concat_time_masked but the second branch has no mask",
            [("Concatenate(axis=1) of a masked and an unmasked sequence: Keras 3 "
             "concatenates [mask, all-valid] along time")],
            streamable=False, stream_note="as concat_time",
            check=check_masked(False),
            keras2=f"tf_keras {k2.__version__} cannot build this model: {msg}")


def make_two_input_masking():
    """Shape of a published model: two masked inputs, one GRU stack, two
    chained softmax outputs."""
    def build(K):
        L = K.layers
        x0 = K.Input(shape=(None, 5), name="notes")
        x1 = K.Input(shape=(None, 3), name="durations")
        m0 = L.Masking(mask_value=0.0, name="mask_notes")(x0)
        m1 = L.Masking(mask_value=-1.0, name="mask_durations")(x1)
        h = L.Concatenate(name="cat")([m0, m1])
        h = L.GRU(8, return_sequences=True, name="gru_1")(h)
        h = L.Dropout(0.3, name="dropout")(h)
        h = L.GRU(6, return_sequences=True, name="gru_2")(h)
        h = L.Dense(6, activation="relu", name="dense")(h)
        y0 = L.TimeDistributed(L.Dense(5, activation="softmax"), name="td_notes")(h)
        y1 = L.TimeDistributed(L.Dense(3, activation="softmax"), name="td_durations")(y0)
        return K.Model([x0, x1], [y0, y1], name="two_input_masking")

    def inputs(rng):
        x0 = with_masked_steps(mk.randn(rng, 4, 7, 5), 0.0,
                               [(0, 5, 7), (1, 2, 4), (2, 0, 2)])
        x1 = with_masked_steps(mk.randn(rng, 4, 7, 3), -1.0,
                               [(0, 5, 7), (1, 3, 5), (3, 6, 7)])
        return [x0, x1]

    def check(K, model, x, ys):
        m0, m1 = valid(x[0], 0.0), valid(x[1], -1.0)
        want = (m0 & m1) if K is k2 else (m0 | m1)
        assert_mask("gru_1", valid_steps_seen(sub_output(K, model, "gru_1", x)), want)
        return {"m_x0": m0, "m_x1": m1, "m_cat": want}

    desc = ("Inputs notes (B,T,5) Masking(0.0) and durations (B,T,3) Masking(-1.0) -> "
            "Concatenate -> GRU(8, seq) -> Dropout -> GRU(6, seq) -> Dense(6, relu) -> "
            "TimeDistributed(Dense(5, softmax)) [y0] -> TimeDistributed(Dense(3, softmax)) "
            "[y1]; masked steps: rows 0 (both, end), 1 (t=2,3 vs t=3,4: overlap at 3), "
            "2 (notes only, start), 3 (durations only, end)")
    covers = ["two Masking inputs with different mask values", "Concatenate of masked inputs",
              "mask rule of Concatenate: Keras 2 AND / Keras 3 OR",
              ("stacked GRUs, Dropout, Dense on 3-D, two chained TimeDistributed softmax "
              "outputs")]
    for K in (k3, k2):
        fixture(K, mk.named("two_input_masking", K), build, inputs, desc, covers,
                streamable=True, stream_note="Masking, Concatenate and every later layer "
                "work per step; the mask of a step is known from that step alone",
                check=check, mask_rule=MERGE_NOTE_K2 if K is k2 else MERGE_NOTE_K3)
    for K in (k3, k2):
        fixture(K, mk.named("two_input_masking_weights", K), build, inputs,
                "two_input_masking as weights-only file + model.to_json()",
                covers[:2] + ["weights-only + JSON config, multi-input masked graph"],
                streamable=True, stream_note="as two_input_masking", check=check,
                save=mk.save_weights_only)


def make_rnnoise():
    """The RNNoise training graph (Valin 2018, rnn_train.py), shrunk: GRUs with
    reset_after=False (old Keras), regularizers and constraints in the config."""
    def build(K):
        L = K.layers
        reg = K.regularizers.l2(1e-4)
        con = K.constraints.MaxNorm(2.0)
        gru_kw = {"recurrent_activation": "sigmoid", "return_sequences": True,
                  "reset_after": False, "kernel_regularizer": reg,
                  "recurrent_regularizer": reg, "kernel_constraint": con,
                  "recurrent_constraint": con}
        x = K.Input(shape=(None, 8), name="main_input")
        tmp = L.Dense(6, activation="tanh", name="input_dense", kernel_constraint=con)(x)
        vad_gru = L.GRU(4, activation="tanh", name="vad_gru", **gru_kw)(tmp)
        vad_out = L.Dense(1, activation="sigmoid", name="vad_output")(vad_gru)
        noise_in = L.Concatenate(name="noise_input")([tmp, vad_gru, x])
        noise_gru = L.GRU(6, activation="relu", name="noise_gru", **gru_kw)(noise_in)
        denoise_in = L.Concatenate(name="denoise_input")([vad_gru, noise_gru, x])
        denoise_gru = L.GRU(8, activation="tanh", name="denoise_gru", **gru_kw)(denoise_in)
        gains = L.Dense(5, activation="sigmoid", name="denoise_output")(denoise_gru)
        return K.Model(x, [gains, vad_out], name="rnnoise")

    both("rnnoise", build, lambda rng: mk.randn(rng, 2, 8, 8),
         "RNNoise shape: main_input (B,T,8) -> Dense(6, tanh) -> vad_gru GRU(4) -> "
         "Dense(1, sigmoid) [y1 vad]; Concatenate[dense, vad_gru, input] -> noise_gru "
         "GRU(6, relu); Concatenate[vad_gru, noise_gru, input] -> denoise_gru GRU(8) -> "
         "Dense(5, sigmoid) [y0 gains]; all GRUs reset_after=False",
         ["three GRUs joined by three-way Concatenates that include the raw input",
          "two outputs, per step (gains first, as in RNNoise)",
          "GRU activation relu", "reset_after=False",
          ("kernel/recurrent regularizers and MaxNorm constraints in the config (no effect "
          "on inference)")],
         streamable=True, stream_note="a real-time model: every layer works per step")


def mask_merge_inputs(rng):
    """x0 masked by 0.0 and x1 masked by -1.0: steps masked at the end, middle and
    start; in both inputs at once (row 0 t=5, row 1 t=2) or in one only."""
    x0 = with_masked_steps(mk.randn(rng, 4, 7, 3), 0.0, [(0, 5, 7), (1, 2, 4), (2, 0, 2)])
    x1 = with_masked_steps(mk.randn(rng, 4, 7, 3), -1.0, [(0, 4, 6), (1, 2, 3), (3, 0, 3)])
    return [x0, x1]


def mask_merge_branches(K):
    """a = GRU(Masking(0.0)(x0)), b = GRU(Masking(-1.0)(x1)), c = GRU(x0) (the
    same input without a Masking layer: no mask)."""
    L = K.layers
    x0 = K.Input(shape=(None, 3), name="masked_zero")
    x1 = K.Input(shape=(None, 3), name="masked_minus_one")
    a = L.GRU(5, return_sequences=True, name="gru_a")(L.Masking(0.0, name="mask_a")(x0))
    b = L.GRU(5, return_sequences=True, name="gru_b")(L.Masking(-1.0, name="mask_b")(x1))
    c = L.GRU(5, return_sequences=True, name="gru_c")(x0)
    return L, [x0, x1], a, b, c


def make_mask_merge():
    def build(K):
        L, ins, a, b, c = mask_merge_branches(K)
        y0 = L.GRU(4, return_sequences=True, name="gru_add_ab")(L.Add(name="add_ab")([a, b]))
        y1 = L.GRU(4, return_sequences=True, name="gru_cat_ac")(
            L.Concatenate(name="cat_ac")([a, c]))
        y2 = L.GRU(4, return_sequences=True, name="gru_add_ac")(L.Add(name="add_ac")([a, c]))
        return K.Model(ins, [y0, y1, y2], name="mask_merge")

    def check(K, model, x, ys):
        ma, mb = valid(x[0], 0.0), valid(x[1], -1.0)
        every = np.ones_like(ma)
        if K is k2:
            want = {"m_add_ab": ma & mb, "m_cat_ac": ma, "m_add_ac": ma}
        else:
            want = {"m_add_ab": ma | mb, "m_cat_ac": every, "m_add_ac": every}
        for i, key in enumerate(want):
            assert_mask(key, valid_steps_seen(ys[i]), want[key])
        return {"m_x0": ma, "m_x1": mb, **want}

    def build_values(K):
        L, ins, a, b, c = mask_merge_branches(K)
        y0 = L.GRU(3, name="gru_cat_ab_last")(L.Concatenate(name="cat_ab")([a, b]))
        y1 = L.Maximum(name="max_ab")([a, b])
        y2 = L.Multiply(name="mul_ac")([a, c])
        y3 = L.Dense(2, name="head_sub_ab")(L.Subtract(name="sub_ab")([a, b]))
        return K.Model(ins, [y0, y1, y2, y3], name="mask_merge_values")

    def check_values(K, model, x, ys):
        ma, mb = valid(x[0], 0.0), valid(x[1], -1.0)
        a, b, c = (sub_output(K, model, n, x) for n in ("gru_a", "gru_b", "gru_c"))
        plain_max, plain_mul = np.maximum(a, b), a * c
        if K is k2:
            want_max, want_mul = plain_max, plain_mul
        else:
            ma3, mb3 = ma[..., None], mb[..., None]
            b2 = np.where(mb3, b, a)
            want_max = np.maximum(np.where(ma3, a, b2), b2)
            want_mul = np.where(ma3, a, 1.0) * c
            assert not np.allclose(ys[1], plain_max) and not np.allclose(ys[2], plain_mul)
        np.testing.assert_allclose(ys[1], want_max, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ys[2], want_mul, rtol=1e-6, atol=1e-6)
        return {"m_x0": ma, "m_x1": mb}

    branches = ("Inputs masked_zero (B,T,3) and masked_minus_one (B,T,3); a = GRU(5, seq)"
                "(Masking(0.0)(masked_zero)), b = GRU(5, seq)(Masking(-1.0)(masked_minus_one)),"
                " c = GRU(5, seq)(masked_zero without Masking: unmasked); ")
    spans = ("; masked steps at end/middle/start, in both inputs at once (row 0 t=5, "
             "row 1 t=2) or in one only")
    for K in (k3, k2):
        fixture(K, mk.named("mask_merge", K), build, mask_merge_inputs,
                branches + "y0 GRU(4, seq)(Add[a,b]), y1 GRU(4, seq)(Concatenate[a,c]), "
                "y2 GRU(4, seq)(Add[a,c])" + spans,
                ["masks through merges: Add of two branches with different masks",
                 "Concatenate / Add of a masked and an unmasked branch",
                 ("GRUs consuming the merged mask (checked against the rule of each Keras "
                 "version, saved as m_add_ab, m_cat_ac, m_add_ac)"),
                 "Keras 2 AND vs Keras 3 OR of merged masks"],
                streamable=True, stream_note="every layer works per step (masks included)",
                check=check, mask_rule=MERGE_NOTE_K2 if K is k2 else MERGE_NOTE_K3)
    for K in (k3, k2):
        fixture(K, mk.named("mask_merge_values", K), build_values, mask_merge_inputs,
                branches + "y0 GRU(3)(Concatenate[a,b]) (last output), y1 Maximum[a,b], "
                "y2 Multiply[a,c], y3 Dense(2)(Subtract[a,b])" + spans,
                [("a last-output GRU after a merged mask (Keras 2: state after the last step "
                 "valid in both; Keras 3: valid in either)"),
                 ("merge VALUES at masked steps: Keras 2 plain ops; Keras 3 Maximum/Minimum "
                 "and Multiply substitute masked inputs (checked against the formulas in "
                 "the README)"), "Subtract under masks (plain in both)"],
                streamable=True, stream_note="every layer works per step (masks included)",
                check=check_values, mask_rule=MERGE_NOTE_K2 if K is k2 else MERGE_NOTE_K3)


def make_multi_depth():
    def build(K):
        L = K.layers
        x = K.Input(shape=(None, 4), name="x")
        g1 = L.GRU(6, return_sequences=True, name="gru_1")(x)
        g2 = L.GRU(5, return_sequences=True, name="gru_2")(g1)
        td = L.TimeDistributed(L.Dense(3, activation="tanh"), name="td_tanh")(g2)
        g3 = L.GRU(4, name="gru_3")(td)
        out = L.Dense(2, activation="softmax", name="final")(g3)
        return K.Model(x, [out, g1, td], name="multi_depth")

    both("multi_depth", build, lambda rng: mk.randn(rng, 3, 6, 4),
         "x -> GRU(6, seq) [y1] -> GRU(5, seq) -> TimeDistributed(Dense(3, tanh)) [y2] -> "
         "GRU(4) -> Dense(2, softmax) [y0]; outputs listed deepest first",
         [("outputs at different depths (an intermediate GRU sequence, a per-step head, a "
          "final vector)"), "output order differs from layer order"],
         streamable=True, stream_note="every layer works per step; y0 is the final "
         "Dense of gru_3's state after the last step")


def make_stream_pair():
    def build_graph(K):
        L = K.layers
        x = K.Input(shape=(None, 6), name="frames")
        d = L.Dense(8, activation="relu", name="front")(x)
        a = L.GRU(8, return_sequences=True, name="gru_a")(d)
        b = L.GRU(8, return_sequences=True, reset_after=False, name="gru_b")(d)
        c = L.GRU(8, return_sequences=True, name="gru_c")(L.Add(name="add_ab")([a, b]))
        y0 = L.TimeDistributed(L.Dense(3, activation="sigmoid"), name="td_head")(c)
        y1 = L.Dense(2, name="head_2")(L.Concatenate(name="cat_bc")([b, c]))
        return K.Model(x, [y0, y1], name="stream_graph")

    def build_chain(K):
        return mk.sequential(K, (None, 6), lambda L, inp: [
            L.Dense(8, activation="relu", name="front", **inp),
            L.GRU(8, return_sequences=True, name="gru_a"),
            L.GRU(8, return_sequences=True, reset_after=False, name="gru_b"),
            L.GRU(8, return_sequences=True, name="gru_c"),
            L.TimeDistributed(L.Dense(3, activation="sigmoid"), name="td_head"),
            L.Dense(2, name="head_2"),
        ])

    def x(rng):
        return mk.randn(rng, 2, 9, 6)

    both("stream_graph", build_graph, x,
         "frames (B,T,6) -> Dense(8, relu) -> GRU a(8) and GRU b(8, reset_after=False) "
         "in parallel -> Add -> GRU c(8) -> TimeDistributed(Dense(3, sigmoid)) [y0]; "
         "Dense(2)(Concatenate[b, c]) [y1]",
         [("a two-output functional graph of streamable layers only (stream it step by "
          "step against the whole-sequence result)"), "Add and Concatenate per step"],
         streamable=True, stream_note="every layer works per step",
         benchmark_pair="stream_chain (same Dense(8), GRU(8) x3 with the same weight shapes "
                        "and TimeDistributed(Dense(3)); the graph adds Add + Concatenate and "
                        "its Dense(2) reads 16 features instead of 3)")
    both("stream_chain", build_chain, x,
         "Sequential chain of the stream_graph layers: Dense(8, relu) -> GRU(8) -> "
         "GRU(8, reset_after=False) -> GRU(8) -> TimeDistributed(Dense(3, sigmoid)) -> "
         "Dense(2)",
         ["the chain counterpart of stream_graph (per-step cost: graph vs chain)"],
         streamable=True, stream_note="every layer works per step",
         benchmark_pair="stream_graph")


# ==========================================================================
# keras_layers
# ==========================================================================
def make_cnn():
    def build_valid(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.Conv1D(6, 3, padding="valid", activation="relu", name="conv_valid", **inp),
            L.MaxPooling1D(pool_size=2, name="maxpool_2"),
            L.GRU(5, return_sequences=True, name="gru_1"),
            L.GRU(4, name="gru_2"),
            L.Dense(2, name="head"),
        ])

    def build_same(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.Conv1D(6, 3, strides=2, padding="same", activation="relu", name="conv_same_s2",
                     **inp),
            L.Conv1D(5, 4, padding="same", use_bias=False, name="conv_same_k4_nobias"),
            L.AveragePooling1D(pool_size=3, strides=1, padding="same", name="avgpool_same"),
            L.GRU(5, return_sequences=True, name="gru"),
            L.TimeDistributed(L.Dense(3), name="td_head"),
        ])

    def build_dilated(K):
        return mk.sequential(K, (None, 3), lambda L, inp: [
            L.Conv1D(5, 3, padding="causal", dilation_rate=2, activation="relu",
                     name="conv_causal_d2", **inp),
            L.Conv1D(5, 2, padding="valid", dilation_rate=3, name="conv_valid_d3"),
            L.MaxPooling1D(pool_size=3, strides=2, padding="same", name="maxpool_same_s2"),
            L.AveragePooling1D(pool_size=2, strides=1, padding="valid", name="avgpool_valid"),
            L.GRU(5, name="gru"),
            L.Dense(2, activation="softmax", name="head"),
        ])

    def build_causal(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu",
                     name="conv_causal_d2", **inp),
            L.Conv1D(5, 2, padding="causal", activation="relu", name="conv_causal_k2"),
            L.GRU(6, return_sequences=True, name="gru"),
            L.TimeDistributed(L.Dense(2), name="td_head"),
        ])

    not_stream = "Conv1D padding valid/same and pooling change the number of steps (or look ahead)"
    both("cnn_valid", build_valid, lambda rng: mk.randn(rng, 3, 12, 4),
         "Conv1D(6, 3, valid, relu) -> MaxPooling1D(2) -> GRU(5, seq) -> GRU(4) -> Dense(2); "
         "T 12 -> 10 -> 5",
         ["Conv1D padding valid + relu", "MaxPooling1D pool 2 (strides default = pool, valid)",
          "GRU stack after a CNN front end"],
         streamable=False, stream_note=not_stream)
    both("cnn_same", build_same, lambda rng: mk.randn(rng, 3, 11, 4),
         "Conv1D(6, 3, strides=2, same, relu) -> Conv1D(5, 4, same, use_bias=False) -> "
         "AveragePooling1D(3, strides=1, same) -> GRU(5, seq) -> TimeDistributed(Dense(3)); "
         "T 11 -> 6",
         ["Conv1D padding same with strides 2 (odd T)",
          "Conv1D same with an even kernel (TF pads 1 left, 2 right) and no bias",
          "AveragePooling1D padding same: edge windows average only the real steps"],
         streamable=False, stream_note=not_stream)
    both("cnn_dilated", build_dilated, lambda rng: mk.randn(rng, 3, 12, 3),
         "Conv1D(5, 3, causal, dilation 2, relu) -> Conv1D(5, 2, valid, dilation 3) -> "
         "MaxPooling1D(3, strides 2, same) -> AveragePooling1D(2, strides 1, valid) -> "
         "GRU(5) -> Dense(2, softmax); T 12 -> 12 -> 9 -> 5 -> 4",
         ["Conv1D causal + dilation", "Conv1D valid + dilation 3",
          "MaxPooling1D padding same with strides 2",
          "AveragePooling1D strides 1 valid"],
         streamable=False, stream_note=not_stream)
    both("cnn_causal", build_causal, lambda rng: mk.randn(rng, 3, 9, 4),
         "Conv1D(6, 3, causal, dilation 2, relu) -> Conv1D(5, 2, causal, relu) -> "
         "GRU(6, seq) -> TimeDistributed(Dense(2))",
         ["a streamable CNN-GRU: causal convolutions only, stride 1"],
         streamable=True,
         stream_note="causal Conv1D output t reads inputs t-(k-1)*d .. t only: a stream "
                     "keeps the last (k-1)*d input steps of each conv (zeros before the "
                     "first step, as Keras pads)")


def make_autoencoder():
    T = 7

    def build(K):
        L = K.layers
        x = K.Input(shape=(T, 3), name="x")
        code = L.GRU(6, name="encoder")(x)
        h = L.RepeatVector(T, name="repeat")(code)
        h = L.GRU(5, return_sequences=True, name="decoder")(h)
        recon = L.TimeDistributed(L.Dense(3), name="reconstruction")(h)
        return K.Model(x, [recon, code], name="gru_autoencoder")

    both("autoencoder", build, lambda rng: mk.randn(rng, 3, T, 3),
         f"GRU(6) encoder (last output) [y1] -> RepeatVector({T}) -> GRU(5, seq) decoder -> "
         "TimeDistributed(Dense(3)) [y0]",
         ["RepeatVector after a last-output GRU", "sequence-to-sequence autoencoder"],
         streamable=False,
         stream_note="the decoder's every step needs the encoder's state after the LAST "
                     "input step: the decoder can only run once the input is complete")


def pool_check(mask_of):
    """GlobalAveragePooling1D honours the mask, GlobalMaxPooling1D ignores it
    (both Keras versions): y0 = GRU sequence, y1 = GAP, y2 = GMP."""
    def check(K, model, x, ys):
        seq, gap, gmp = ys[0], ys[1], ys[2]
        m = mask_of(x)
        w = m[..., None].astype(np.float64)
        np.testing.assert_allclose(gap, (seq * w).sum(1) / w.sum(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gmp, seq.max(1), rtol=0, atol=0)
        masked_max = np.where(m[..., None], seq, -np.inf).max(1)
        assert not np.allclose(gmp, masked_max), "data does not show that GMP ignores the mask"
        return {"m_x": m}
    return check


GMP_NOTE = ("GlobalMaxPooling1D has no mask support in either version (Keras 3 warns that "
            "it 'will destroy the mask information'): y2 = max over ALL steps of y0")


def make_pooling():
    def build(K):
        L = K.layers
        x = K.Input(shape=(None, 4), name="x")
        s = L.GRU(6, return_sequences=True, name="gru")(x)
        y0 = L.Dense(3, activation="softmax", name="head_avg")(
            L.GlobalAveragePooling1D(name="gap")(s))
        y1 = L.Dense(2, name="head_max")(L.GlobalMaxPooling1D(name="gmp")(s))
        return K.Model(x, [y0, y1], name="gru_pooling")

    both("pooling", build, lambda rng: mk.randn(rng, 3, 6, 4),
         "GRU(6, seq) -> GlobalAveragePooling1D -> Dense(3, softmax) [y0]; "
         "GlobalMaxPooling1D -> Dense(2) [y1]",
         ["GlobalAveragePooling1D and GlobalMaxPooling1D after a GRU, no mask"],
         streamable=False, stream_note="global pooling reduces over the whole sequence")

    def build_masked(K):
        L = K.layers
        x = K.Input(shape=(None, 3), name="x")
        s = L.GRU(6, return_sequences=True, name="gru")(L.Masking(0.0, name="masking")(x))
        gap = L.GlobalAveragePooling1D(name="gap")(s)
        gmp = L.GlobalMaxPooling1D(name="gmp")(s)
        head = L.Dense(2, activation="softmax", name="head")(
            L.Concatenate(name="cat")([gap, gmp]))
        return K.Model(x, [s, gap, gmp, head], name="gru_pooling_masked")

    def masked_x(rng):
        return with_masked_steps(mk.randn(rng, 4, 7, 3), 0.0,
                                 [(0, 5, 7), (1, 2, 4), (2, 0, 3), (3, 0, 1)])

    both("pooling_masked", build_masked, masked_x,
         "Masking(0.0) -> GRU(6, seq) [y0] -> GlobalAveragePooling1D [y1] and "
         "GlobalMaxPooling1D [y2] -> Concatenate -> Dense(2, softmax) [y3]; zero steps at "
         "end (row 0), middle (row 1), start (rows 2, 3)",
         ["GlobalAveragePooling1D honours the mask (mean over valid steps only)",
          ("GlobalMaxPooling1D IGNORES the mask (max over all steps, incl. masked steps "
          "whose GRU output is the previous output or zeros before the first valid "
          "step): checked, both Keras versions")],
         streamable=False, stream_note="global pooling reduces over the whole sequence",
         check=pool_check(lambda x: valid(x, 0.0)), note=GMP_NOTE)

    def build_emb(K):
        L = K.layers
        x = K.Input(shape=(None,), dtype="int32", name="tokens")
        e = L.Embedding(20, 5, mask_zero=True, name="emb")(x)
        s = L.GRU(6, return_sequences=True, name="gru")(e)
        gap = L.GlobalAveragePooling1D(name="gap")(s)
        gmp = L.GlobalMaxPooling1D(name="gmp")(s)
        return K.Model(x, [s, gap, gmp, L.Dense(3, name="head")(gap)],
                       name="gru_pooling_embedding")

    def tokens(rng):
        x = rng.integers(1, 20, size=(4, 7)).astype(np.int32)
        x[0, 5:] = 0
        x[1, 2:4] = 0
        x[2, :3] = 0
        x[3, :1] = 0
        return x

    both("pooling_embedding", build_emb, tokens,
         "Embedding(20, 5, mask_zero) -> GRU(6, seq) [y0] -> GlobalAveragePooling1D [y1] "
         "-> Dense(3) [y3]; GlobalMaxPooling1D [y2]; int32 tokens, 0 at end/middle/start",
         ["Embedding mask_zero mask through GRU into GlobalAveragePooling1D (masked mean)",
          "GlobalMaxPooling1D ignores the mask (checked)"],
         streamable=False, stream_note="global pooling reduces over the whole sequence",
         check=pool_check(lambda x: x != 0), note=GMP_NOTE)


def make_reshape():
    def build_flatten(K):
        return mk.sequential(K, (6, 4), lambda L, inp: [
            L.GRU(5, return_sequences=True, name="gru_1", **inp),
            L.GRU(4, return_sequences=True, name="gru_2"),
            L.Flatten(name="flatten"),
            L.Dense(3, name="head"),
        ])

    def build_reshape(K):
        return mk.sequential(K, (24,), lambda L, inp: [
            L.Reshape((6, 4), name="to_sequence", **inp),
            L.GRU(5, return_sequences=True, name="gru_time"),
            L.Permute((2, 1), name="swap_time_features"),
            L.GRU(3, return_sequences=True, name="gru_over_units"),
            L.Reshape((-1,), name="flatten_by_reshape"),
            L.Dense(4, activation="relu", name="dense"),
            L.Reshape((2, 2), name="to_pairs"),
            L.Permute((2, 1), name="swap_pairs"),
            L.GRU(2, name="gru_pairs"),
        ])

    both("flatten", build_flatten, lambda rng: mk.randn(rng, 3, 6, 4),
         "Input (6, 4) fixed T -> GRU(5, seq) -> GRU(4, seq) -> Flatten -> Dense(3)",
         ["Flatten of a (T, units) GRU sequence (row-major: t outer, unit inner)",
          "fixed T in the input shape"],
         streamable=False, stream_note="Flatten mixes all timesteps into one vector")
    both("reshape_permute", build_reshape, lambda rng: mk.randn(rng, 3, 24),
         "Input (24,) -> Reshape((6, 4)) -> GRU(5, seq) -> Permute((2, 1)) (5 steps of 6) "
         "-> GRU(3, seq) -> Reshape((-1,)) -> Dense(4, relu) -> Reshape((2, 2)) -> "
         "Permute((2, 1)) -> GRU(2)",
         ["Reshape with explicit and -1 target shapes", ("Permute((2, 1)) swapping time and "
          "features around GRUs"), "GRU over a permuted sequence"],
         streamable=False, stream_note="Reshape/Permute regroup the time axis")


def set_norm_weights(model, rng):
    """Non-trivial BatchNormalization statistics (positive variances)."""
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        new = []
        for w in layer.weights:
            kind = w.name.split("/")[-1].split(":")[0]
            shape = tuple(w.shape)
            if kind == "gamma":
                v = 1.0 + 0.5 * rng.standard_normal(shape)
            elif kind == "beta":
                v = 0.5 * rng.standard_normal(shape)
            elif kind == "moving_mean":
                v = 0.8 * rng.standard_normal(shape)
            elif kind == "moving_variance":
                v = rng.uniform(0.2, 3.0, shape)
            else:
                raise AssertionError(w.name)
            new.append(v.astype(np.float32))
        layer.set_weights(new)


AXIS_NOTE = ("Keras 2 writes axis as a list of non-negative indices resolved when the layer "
             "was built ([2] on sequences, [1] on vectors); Keras 3 writes "
             "BatchNormalization axis -1 (an int) and LayerNormalization axis [-1]")


def make_norm():
    def build_bn(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.Masking(0.0, name="masking", **inp),
            L.BatchNormalization(name="bn_input"),
            L.GRU(6, return_sequences=True, name="gru_1"),
            L.BatchNormalization(center=False, epsilon=0.01, name="bn_seq_no_center"),
            L.GRU(5, name="gru_2"),
            L.BatchNormalization(scale=False, epsilon=1e-5, name="bn_vec_no_scale"),
            L.Dense(4, activation="relu", name="dense"),
            L.BatchNormalization(momentum=0.9, name="bn_vec"),
            L.Dense(2, name="head"),
        ])

    def bn_x(rng):
        return with_masked_steps(mk.randn(rng, 4, 6, 4, scale=2.0), 0.0,
                                 [(0, 4, 6), (1, 2, 3), (2, 0, 2)])

    both("batchnorm", build_bn, bn_x,
         "Masking(0.0) -> BatchNormalization (input) -> GRU(6, seq) -> "
         "BatchNormalization(center=False, epsilon=0.01) -> GRU(5) -> "
         "BatchNormalization(scale=False, epsilon=1e-5) -> Dense(4, relu) -> "
         "BatchNormalization -> Dense(2); random gamma/beta/moving_mean, moving_variance "
         "in [0.2, 3]",
         ["BatchNormalization inference form on sequences and on vectors",
          "center=False (no beta) and scale=False (no gamma) weight lists",
          "non-default epsilon",
          ("the mask passes through BatchNormalization (masked steps are no longer zero "
          "after it, the GRU must still skip them)")],
         streamable=True, stream_note="inference BatchNormalization is a per-feature affine "
         "map: per step", prepare=set_norm_weights, note=AXIS_NOTE)

    def build_ln(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.GRU(6, return_sequences=True, name="gru_1", **inp),
            L.LayerNormalization(name="ln_seq"),
            L.GRU(5, return_sequences=True, name="gru_2"),
            L.LayerNormalization(center=False, epsilon=1e-5, name="ln_seq_no_center"),
            L.GRU(4, name="gru_3"),
            L.LayerNormalization(scale=False, name="ln_vec_no_scale"),
            L.Dense(3, name="dense"),
            L.LayerNormalization(center=False, scale=False, epsilon=0.1, name="ln_plain"),
            L.Dense(2, name="head"),
        ])

    both("layernorm", build_ln, lambda rng: mk.randn(rng, 3, 6, 4),
         "GRU(6, seq) -> LayerNormalization -> GRU(5, seq) -> LayerNormalization("
         "center=False, epsilon=1e-5) -> GRU(4) -> LayerNormalization(scale=False) -> "
         "Dense(3) -> LayerNormalization(center=False, scale=False, epsilon=0.1) -> Dense(2)",
         ["LayerNormalization axis -1 on sequences and vectors (random gamma/beta)",
          "center/scale False cases (weight lists shrink)", "epsilon default 1e-3, 1e-5, 0.1"],
         streamable=True, stream_note="LayerNormalization over the feature axis: per step",
         note=AXIS_NOTE)

    def build_rms(K):
        return mk.sequential(K, (None, 4), lambda L, inp: [
            L.GRU(6, return_sequences=True, name="gru", **inp),
            L.LayerNormalization(rms_scaling=True, name="ln_rms_scaling"),
            L.RMSNormalization(epsilon=1e-4, name="rms_norm"),
            L.Dense(2, name="head"),
        ])

    fixture(k3, "rmsnorm_k3", build_rms, lambda rng: mk.randn(rng, 3, 6, 4),
            "Keras 3 only: GRU(6, seq) -> LayerNormalization(rms_scaling=True) -> "
            "RMSNormalization(epsilon=1e-4) -> Dense(2)",
            [("LayerNormalization(rms_scaling=True): x * rsqrt(var(x) + eps) * gamma (the "
             "VARIANCE, mean not subtracted from x, no beta; deprecated in Keras 3)"),
             "RMSNormalization: x * rsqrt(mean(x^2) + eps) * scale"],
            streamable=True, stream_note="per step",
            keras2="tf_keras has neither rms_scaling nor RMSNormalization")


# Compiled under a fixed file name: the marshalled bytecode in the files then
# does not depend on where the repository is checked out (it still depends on
# the Python version: 3.11 here).
LAST_STEP_X2 = eval(compile("lambda t: t[:, -1, :] * 2.0", "<gru_infer fixture>", "eval"))


def make_refused():
    def build_lambda(K):
        return mk.sequential(K, (None, 3), lambda L, inp: [
            L.GRU(5, return_sequences=True, name="gru", **inp),
            L.Lambda(LAST_STEP_X2, name="last_step_x2"),
            L.Dense(2, name="head"),
        ])

    both("lambda", build_lambda, lambda rng: mk.randn(rng, 3, 5, 3),
         "GRU(5, seq) -> Lambda(lambda t: t[:, -1, :] * 2.0) -> Dense(2)",
         [("Lambda layer: Python code in the file (marshalled bytecode); gru_infer must "
          "refuse it by name")],
         streamable=False, stream_note="unknown code", expect="refuse",
         refuse_reason="Lambda layer 'last_step_x2' holds Python bytecode: it cannot be "
                       "converted without running untrusted code",
         save=save_unsafe,
         note="Keras 3 reloads it only with safe_mode=False")

    def build_custom(K):
        return mk.sequential(K, (None, 3), lambda L, inp: [
            L.GRU(5, return_sequences=True, name="gru", **inp),
            custom_scale_shift(K)(name="scale_shift"),
            L.GRU(4, name="gru_2"),
            L.Dense(2, name="head"),
        ])

    both("custom_layer", build_custom, lambda rng: mk.randn(rng, 3, 5, 3),
         "GRU(5, seq) -> ScaleShift (custom layer registered as "
         "'GruInferFixtures>ScaleShift', weights scale and shift) -> GRU(4) -> Dense(2)",
         [("custom (user-registered) layer class in the config; gru_infer must refuse it by "
          "name")],
         streamable=False, stream_note="unknown layer", expect="refuse",
         refuse_reason="layer 'scale_shift' is of the custom class "
                       "'GruInferFixtures>ScaleShift', unknown to gru_infer",
         save=save_unsafe)


_CUSTOM: dict = {}


def custom_scale_shift(K):
    """A user layer y = x * scale + shift (per feature), registered per Keras."""
    if K in _CUSTOM:
        return _CUSTOM[K]

    class ScaleShift(K.layers.Layer):
        def build(self, input_shape):
            n = input_shape[-1]
            self.scale = self.add_weight(name="scale", shape=(n,), initializer="ones")
            self.shift = self.add_weight(name="shift", shape=(n,), initializer="zeros")
            super().build(input_shape)

        def call(self, inputs):
            return inputs * self.scale + self.shift

        def compute_output_shape(self, input_shape):
            return input_shape

    register = (k3.saving.register_keras_serializable if K is k3
                else k2.utils.register_keras_serializable)
    _CUSTOM[K] = register(package="GruInferFixtures")(ScaleShift)
    return _CUSTOM[K]


# ==========================================================================
# README: generated blocks
# ==========================================================================
REFERENCE_CLASSES = [
    "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
    "Conv1D", "MaxPooling1D", "AveragePooling1D", "RepeatVector",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten", "Reshape", "Permute",
    "BatchNormalization", "LayerNormalization", "RMSNormalization", "Lambda",
    "GruInferFixtures>ScaleShift",
]


ALL_INSTANCES = {"BatchNormalization", "LayerNormalization"}
LIKE_ADD = {"Subtract", "Multiply", "Average", "Maximum", "Minimum"}


def file_config(path: Path) -> dict:
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def config_layers(cfg: dict):
    return cfg["config"]["layers"]


def class_of(layer: dict) -> str:
    """Layer class; Keras 3 op nodes (module keras.src.ops.*) as 'op:<class>', since
    e.g. the op Concatenate and the layer Concatenate share a class_name."""
    if (layer.get("module") or "").startswith("keras.src.ops"):
        return "op:" + layer["class_name"]
    return layer.get("registered_name") or layer["class_name"]


def k2_weights(path: Path, lname: str) -> list[tuple[str, tuple]]:
    with h5py.File(path, "r") as f:
        g = f["model_weights"][lname]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs["weight_names"]]
        return [(f"model_weights/{lname}/{n}", g[n].shape) for n in names]


def k3_weights(path: Path, lname: str, model) -> list[tuple[str, str, tuple]]:
    """(path in model.weights.h5, variable name, shape): the group is found by its
    'name' attribute, each vars/<i> matched to the layer's variable by value."""
    with zipfile.ZipFile(path) as z:
        data = z.read("model.weights.h5")
    layer = model.get_layer(lname)
    out = []
    with h5py.File(io.BytesIO(data), "r") as f:
        found = []
        f["layers"].visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Group)
                               and o.attrs.get("name") == lname and n.endswith("vars")
                               else None)
        assert len(found) == 1, (lname, found)
        g = f["layers"][found[0]]
        for i in range(len(g)):
            arr = g[str(i)][()]
            match = [v for v in layer.weights
                     if tuple(v.shape) == arr.shape and np.array_equal(np.asarray(v), arr)]
            out.append((f"layers/{found[0]}/{i}", match[0].name if match else "?", arr.shape))
    return out


def strip_ids(v):
    """Drop Keras 3's shared_object_id (a memory address: differs every run)."""
    if isinstance(v, dict):
        return {k: strip_ids(x) for k, x in v.items() if k != "shared_object_id"}
    if isinstance(v, list):
        return [strip_ids(x) for x in v]
    return v


def compact_layer_json(layer: dict) -> str:
    """One key per line, nested values compact: readable and short."""
    layer = strip_ids(layer)
    lines = ["{"]
    items = list(layer.items())
    for i, (k, v) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if k == "config" and isinstance(v, dict):
            lines.append(f' "{k}": {{')
            sub = list(v.items())
            for j, (sk, sv) in enumerate(sub):
                send = "," if j < len(sub) - 1 else ""
                lines.append(f'  "{sk}": {json.dumps(sv)}{send}')
            lines.append(f" }}{end}")
        else:
            lines.append(f' "{k}": {json.dumps(v)}{end}')
    lines.append("}")
    return "\n".join(lines)


def layer_reference(which: str) -> str:
    """Per class: a config example (Keras 2 .h5 and Keras 3 .keras) and the
    weights' paths / names / shapes, read from the files just written."""
    d = out_dir(which)
    manifest = json.loads((d / "manifest.json").read_text())["fixtures"]
    examples: dict[tuple[str, int], tuple] = {}
    ops: dict[str, tuple] = {}  # Keras 3 op nodes (mask computations)
    masked_call: list[tuple] = []  # one GRU called with an explicit mask= kwarg
    instances: dict[tuple[str, int], list] = {}  # ALL_INSTANCES: every layer
    for e in manifest:
        ckpt = [f for f in e["files"] if f.endswith((".keras", ".h5"))
                and not f.endswith(".weights.h5")]
        if not ckpt or e["format_id"] not in ("k2_h5_model", "keras_v3_zip"):
            continue
        path = d / ckpt[0]
        layers = config_layers(file_config(path))
        for lay in layers:
            if class_of(lay).startswith("op:"):
                ops.setdefault(class_of(lay)[3:], (e["name"], lay))
            elif lay["class_name"] == "GRU" and not masked_call and any(
                    isinstance(n, dict) and n.get("kwargs", {}).get("mask") is not None
                    for n in lay.get("inbound_nodes", [])):
                masked_call.append((e["name"], lay))
        todo = [lay for lay in layers
                if class_of(lay) in REFERENCE_CLASSES
                and (class_of(lay), e["keras_major"]) not in examples]
        if not todo and not any(class_of(lay) in ALL_INSTANCES for lay in layers):
            continue
        model = None
        if e["keras_major"] == 3:
            custom_scale_shift(k3)
            model = k3.models.load_model(str(path), compile=False, safe_mode=False)
        for lay in todo:
            key = (class_of(lay), e["keras_major"])
            if key in examples:
                continue
            lname = lay["config"]["name"]
            weights = (k2_weights(path, lname) if e["keras_major"] == 2
                       else k3_weights(path, lname, model))
            examples[key] = (e["name"], lay, weights)
        for lay in layers:  # every variant of the normalization layers
            if class_of(lay) in ALL_INSTANCES:
                lname = lay["config"]["name"]
                weights = (k2_weights(path, lname) if e["keras_major"] == 2
                           else k3_weights(path, lname, model))
                flags = {k: lay["config"][k] for k in ("axis", "center", "scale", "epsilon")
                         if k in lay["config"]}
                instances.setdefault((class_of(lay), e["keras_major"]), []).append(
                    (e["name"], lname, flags, weights))
    out = [("Configs below are copied from the files, minus Keras 3's `shared_object_id` "
           "values (object addresses that change every run).\n")]
    for cls in REFERENCE_CLASSES:
        if not any(c == cls for c, _ in examples):
            continue
        out.append(f"### {cls}\n")
        if cls in LIKE_ADD:
            fx = ", ".join(f"`{examples[(cls, m)][0]}`" for m in (2, 3) if (cls, m) in examples)
            out.append(f"Config and wiring exactly as `Add` with class_name `{cls}` (no "
                       f"parameters, no weights; e.g. {fx}).\n")
            continue
        for major in (2, 3):
            if (cls, major) not in examples:
                out.append(f"Keras {major}: not written (see the notes above).\n")
                continue
            fx, lay, weights = examples[(cls, major)]
            where = ("`.h5` `model_config` attribute" if major == 2
                     else "`.keras` `config.json`")
            out.append(f"Keras {major} (`{fx}`, {where}):\n")
            out.append("```json\n" + compact_layer_json(lay) + "\n```\n")
            if not weights:
                out.append("Weights: none.\n")
            elif major == 2:
                out.append("Weights (in `weight_names` order):\n")
                out.extend(f"- `{p}` {list(s)}" for p, s in weights)
                out.append("")
            else:
                out.append("Weights (`model.weights.h5` in the zip; the `vars` group has "
                           "attribute `name` = the layer name):\n")
                out.extend(f"- `{p}` = `{n}` {list(s)}" for p, n, s in weights)
                out.append("")
            if (cls, major) in instances:
                out.append(f"Every {cls} in the Keras {major} fixtures:\n")
                for fx, lname, flags, ws in instances[(cls, major)]:
                    names = ", ".join(
                        f"`{w[0].rsplit('/', 1)[-1]}`{'=`' + w[1] + '`' if major == 3 else ''}"
                        f" {list(w[-1])}" for w in ws)
                    out.append(f"- `{fx}` `{lname}` {json.dumps(flags)}: {names}")
                out.append("")
    if ops:
        out.append("### Keras 3 op nodes (mask computations)\n")
        out.append("Functional Keras 3 models with Masking / mask_zero write the mask "
                   "arithmetic as op nodes (`module` `keras.src.ops.numpy`, "
                   "`registered_name` = class_name, no weights) and hand the result to "
                   "mask-consuming layers as an explicit `mask` kwarg in `inbound_nodes`. "
                   "Tensor arguments are `__keras_tensor__` records; other arguments are "
                   "literals (the mask value of `NotEqual`). The op `Concatenate` has the "
                   "same class_name as the layer: tell them apart by `module`.\n")
        for name in sorted(ops):
            fx, lay = ops[name]
            out.append(f"`{name}` (`{fx}`):\n")
            out.append("```json\n" + json.dumps(strip_ids(lay)) + "\n```\n")
    if masked_call:
        fx, lay = masked_call[0]
        out.append(f"A layer called with an explicit mask (`{fx}`, layer "
                   f"`{lay['name']}`), its `inbound_nodes`:\n")
        out.append("```json\n" + json.dumps(strip_ids(lay["inbound_nodes"])) + "\n```\n")
    return "\n".join(out)


def fixture_table(which: str) -> str:
    manifest = json.loads((out_dir(which) / "manifest.json").read_text())["fixtures"]
    rows = ["| fixture | files | K | stream | expect | covers |", "|---|---|---|---|---|---|"]
    for e in manifest:
        files = ", ".join(f for f in e["files"] if not f.endswith(".npz"))
        covers = "; ".join(e["covers"])
        rows.append(f"| {e['name']} | {files} | {e['keras_major']} | "
                    f"{'yes' if e['streamable'] else 'no'} | {e['expect']} | {covers} |")
    return "\n".join(rows)


def replace_block(text: str, tag: str, body: str) -> str:
    begin, end = f"<!-- BEGIN GENERATED {tag} -->", f"<!-- END GENERATED {tag} -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.DOTALL)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def update_readme(which: str) -> None:
    path = out_dir(which) / "README.md"
    text = path.read_text() if path.exists() else f"# {which} fixtures\n"
    text = replace_block(text, "FIXTURE TABLE", fixture_table(which))
    text = replace_block(text, "LAYER REFERENCE", layer_reference(which))
    path.write_text(text)


# ==========================================================================
STEPS = {
    GRAPH: [
        (("merges_seq_k3", "merges_seq_tf2", "merges_vec_k3", "merges_vec_tf2",
          "merges_vec_weights_k3", "merges_vec_weights_tf2"), make_merges),
        (("concat_time_k3", "concat_time_tf2", "concat_time_masked_k3",
          "concat_time_masked_tf2", "concat_time_mixed_k3"), make_concat_time),
        (("two_input_masking_k3", "two_input_masking_tf2", "two_input_masking_weights_k3",
          "two_input_masking_weights_tf2"), make_two_input_masking),
        (("rnnoise_k3", "rnnoise_tf2"), make_rnnoise),
        (("mask_merge_k3", "mask_merge_tf2", "mask_merge_values_k3", "mask_merge_values_tf2"),
         make_mask_merge),
        (("multi_depth_k3", "multi_depth_tf2"), make_multi_depth),
        (("stream_graph_k3", "stream_graph_tf2", "stream_chain_k3", "stream_chain_tf2"),
         make_stream_pair),
    ],
    LAYERS: [
        (("cnn_valid_k3", "cnn_valid_tf2", "cnn_same_k3", "cnn_same_tf2", "cnn_dilated_k3",
          "cnn_dilated_tf2", "cnn_causal_k3", "cnn_causal_tf2"), make_cnn),
        (("autoencoder_k3", "autoencoder_tf2"), make_autoencoder),
        (("pooling_k3", "pooling_tf2", "pooling_masked_k3", "pooling_masked_tf2",
          "pooling_embedding_k3", "pooling_embedding_tf2"), make_pooling),
        (("flatten_k3", "flatten_tf2", "reshape_permute_k3", "reshape_permute_tf2"),
         make_reshape),
        (("batchnorm_k3", "batchnorm_tf2", "layernorm_k3", "layernorm_tf2", "rmsnorm_k3"),
         make_norm),
        (("lambda_k3", "lambda_tf2", "custom_layer_k3", "custom_layer_tf2"), make_refused),
    ],
}


def write_manifest(which: str) -> None:
    path = out_dir(which) / "manifest.json"
    entries = FIXTURES[which]
    if ONLY is not None and path.exists():
        done = {e["name"] for e in entries}
        entries = [e for e in json.loads(path.read_text())["fixtures"]
                   if e["name"] not in done] + entries
    order = [n for names, _ in STEPS[which] for n in names]
    entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else 999)
    manifest = {
        "generator": "tools/make_keras_graph_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tf_keras": k2.__version__,
            "keras": k3.__version__,
            "keras_backend": k3.backend.backend(),
            "numpy": np.__version__,
            "h5py": h5py.__version__,
        },
        "npz_keys": "x (single input) or x0, x1, ... (model input order; float32, int32 "
                    "token ids); y (single output) or y0, y1, ... (model output order); "
                    "m_* boolean masks (batch, time) where an entry lists npz_extra",
        "entry_fields": {
            "inputs": "[{name: npz key, keras_name: Input layer name, shape, dtype}]",
            "outputs": "[{name: npz key, keras_name: output layer name, shape}]",
            "streamable": "every layer can run one timestep at a time (the stream's "
                          "per-step outputs equal the whole-sequence outputs step by step)",
            "stream_note": "why / how",
            "expect": "numbers (gru_infer must reproduce y*) or refuse (it must refuse the "
                      "file with a clear error naming the layer; y* recorded anyway)",
            "refuse_reason": "what the error should say",
            "keras2": "on a Keras-3-only fixture: why there is no Keras 2 twin",
            "mask_rule": "the merge mask rule of the writing Keras version",
        },
        "reload_check": f"each file reloaded in its own framework, allclose "
                        f"rtol={mk.RTOL} atol={mk.ATOL} (Lambda: Keras 3 safe_mode=False)",
        "fixtures": entries,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out_dir(which).iterdir() if p.is_file())
    print(f"{which}: {len(entries)} fixtures, directory total {total / 1e6:.2f} MB")


def main(argv=None) -> int:
    global ONLY, ROOT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma separated fixture names (manifest is merged)")
    ap.add_argument("--out", type=Path, default=ROOT, metavar="DIR",
                    help="parent of keras_graph/ and keras_layers/ (default: tests/fixtures)")
    args = ap.parse_args(argv)
    if args.only:
        ONLY = set(args.only.split(","))
        known = {n for steps in STEPS.values() for names, _ in steps for n in names}
        unknown = ONLY - known
        if unknown:
            ap.error(f"unknown fixture(s): {', '.join(sorted(unknown))}")
    ROOT = args.out
    for which, steps in STEPS.items():
        if not any(wanted(n) for names, _ in steps for n in names):
            continue
        use_dir(which)
        for names, fn in steps:
            if any(wanted(n) for n in names):
                print(f"[{which}: {fn.__name__}]")
                fn()
        write_manifest(which)
        update_readme(which)
    return 0


if __name__ == "__main__":
    sys.exit(main())
