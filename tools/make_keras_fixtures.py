#!/usr/bin/env python3
"""Generate real Keras checkpoints used as test fixtures for gru_infer.

Writes everything into ``tests/fixtures/keras/`` (relative to the repo root).
Needs TensorFlow + tf_keras (Keras 2 API) + Keras 3; run it with a separate
virtualenv, never with the project's own interpreter:

    python3 -m venv /work/venvs/tf
    /work/venvs/tf/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py
    /work/venvs/tf/bin/python tools/make_keras_fixtures.py

Every fixture NAME gets its checkpoint file(s) plus ``NAME.npz`` holding the
model input ``x`` and the framework's own outputs (``y`` or ``y0``, ``y1``...).
All weights are overwritten with seeded random values (biases included) so
that tests are sensitive to every single weight.  Every saved file is
reloaded in the framework that wrote it and must reproduce its outputs.

Usage: make_keras_fixtures.py [--only NAME[,NAME...]] [--seed-without-optimizer]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU math
os.environ.pop("TF_USE_LEGACY_KERAS", None)  # `keras` must stay Keras 3

import numpy as np  # noqa: E402
import h5py  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as k2  # noqa: E402  (Keras 2 API)
import keras as k3  # noqa: E402  (Keras 3)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "keras"

RTOL = 1e-5
ATOL = 1e-5

FIXTURES: list[dict] = []  # manifest entries
ONLY: set[str] | None = None
SEED_OPTIMIZER = True  # --seed-without-optimizer turns it off (saves ~6.8 MB)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def rng_for(name: str) -> np.random.Generator:
    """A numpy generator seeded from the fixture name (stable across runs)."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name)) % (2**31)
    return np.random.default_rng(seed)


def randomize(model, rng: np.random.Generator, scale: float = 0.5,
              cap_fan_in: bool = False) -> None:
    """Overwrite every weight (kernels, recurrent kernels, biases, embeddings)
    with normal * scale.  With cap_fan_in the std of 2-D weights is limited to
    2/sqrt(fan_in) so that wide layers do not saturate."""
    new = []
    for w in model.get_weights():
        s = scale
        if cap_fan_in and w.ndim == 2:
            s = min(scale, 2.0 / np.sqrt(w.shape[0]))
        new.append((rng.standard_normal(w.shape) * s).astype(w.dtype))
    model.set_weights(new)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def as_list(y):
    if isinstance(y, (list, tuple)):
        return [np.asarray(a) for a in y]
    if isinstance(y, dict):
        raise TypeError("dict outputs not expected")
    return [np.asarray(y)]


def out_dict(ys: list[np.ndarray]) -> dict[str, np.ndarray]:
    if len(ys) == 1:
        return {"y": ys[0].astype(np.float32)}
    return {f"y{i}": a.astype(np.float32) for i, a in enumerate(ys)}


def check_close(name: str, got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want), (name, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (name, i, g.shape, w.shape)
        if not np.allclose(g, w, rtol=RTOL, atol=ATOL):
            raise AssertionError(
                f"{name}: reload mismatch on output {i}: "
                f"max abs diff {np.max(np.abs(g - w))}")


def wanted(name: str) -> bool:
    return ONLY is None or name in ONLY


def record(name, files, writer, fmt, description, covers, x, ys, **extra):
    """Write NAME.npz and append a manifest entry."""
    arrays = {"x": x}
    arrays.update(out_dict(ys))
    arrays.update({k: v for k, v in extra.pop("npz_extra", {}).items()})
    np.savez(OUT / f"{name}.npz", **arrays)
    version = {"tf_keras": k2.__version__, "keras": k3.__version__}[writer]
    entry = {
        "name": name,
        "files": list(files) + [f"{name}.npz"],
        "writer": writer,
        "keras_version": version,
        "keras_major": 2 if writer == "tf_keras" else 3,
        "format": fmt,
        "format_id": FORMAT_IDS[fmt],
        "description": description,
        "covers": covers,
        "input": {"shape": list(x.shape), "dtype": str(x.dtype)},
        "outputs": {k: list(v.shape) for k, v in out_dict(ys).items()},
    }
    entry.update(extra)
    FIXTURES.append(entry)
    sizes = sum((OUT / f).stat().st_size for f in entry["files"])
    print(f"  wrote {name}: {entry['files']} ({sizes/1024:.1f} KiB)")


def fresh(session: str) -> None:
    """Reset layer-name counters so layer names (gru, gru_1, ...) are stable."""
    if session == "k2":
        k2.backend.clear_session()
    else:
        k3.backend.clear_session()
    tf.random.set_seed(1234)
    np.random.seed(1234)
    k3.utils.set_random_seed(1234)


# Format tags used in the manifest.
F_K2_H5 = "h5-full-model (Keras 2 legacy HDF5, model_config + model_weights)"
F_K3_H5 = "h5-full-model (Keras 3 legacy HDF5 via model.save('x.h5'))"
F_K3_ZIP = ".keras zip (Keras 3 v3 format: config.json, metadata.json, model.weights.h5)"
F_K2_W = "h5-weights-only (Keras 2 save_weights('x.h5'), layer_names/weight_names) + to_json() config"
F_K3_W = ".weights.h5 (Keras 3 save_weights, layers/<name>/.../vars/<i>) + to_json() config"
FORMAT_IDS = {F_K2_H5: "k2_h5_model", F_K3_H5: "k3_h5_model", F_K3_ZIP: "keras_v3_zip",
              F_K2_W: "k2_h5_weights+json", F_K3_W: "k3_weights_h5+json"}


# --------------------------------------------------------------------------
# save + verify in each framework
# --------------------------------------------------------------------------
def save_k2_h5(model, fname, x, ys, include_optimizer=True):
    path = OUT / fname
    if path.exists():
        path.unlink()
    model.save(str(path), save_format="h5", include_optimizer=include_optimizer)
    re = k2.models.load_model(str(path), compile=False)
    check_close(fname, as_list(re.predict(x, verbose=0)), ys)


def save_k3_keras(model, fname, x, ys, custom_check=None):
    path = OUT / fname
    if path.exists():
        path.unlink()
    model.save(str(path))
    re = k3.models.load_model(str(path), compile=False)
    if custom_check is not None:
        custom_check(re)
    else:
        check_close(fname, as_list(re.predict(x, verbose=0)), ys)


def save_k3_h5(model, fname, x, ys, rebuild=None):
    """rebuild: if given, a function returning a fresh model of the same
    architecture; the file is then verified through load_weights() only
    (for files whose config Keras 3 itself cannot deserialize)."""
    path = OUT / fname
    if path.exists():
        path.unlink()
    model.save(str(path))  # legacy HDF5 (Keras 3 warns, that is expected)
    if rebuild is None:
        re = k3.models.load_model(str(path), compile=False)
    else:
        try:
            k3.models.load_model(str(path), compile=False)
            raise AssertionError(f"{fname}: expected Keras 3 to fail reloading the config")
        except ValueError as e:
            assert "NotEqual" in str(e), e
        re = rebuild()
        re.load_weights(str(path))
    check_close(fname, as_list(re.predict(x, verbose=0)), ys)


def k2_predict(model, x):
    return as_list(model.predict(x, verbose=0))


def k3_predict(model, x):
    return as_list(model.predict(x, verbose=0))


# --------------------------------------------------------------------------
# 1/2. the seed model
# --------------------------------------------------------------------------
def seed_train_data(rng):
    xt = randn(rng, 4, 4, 100)
    yt = (rng.random((4, 4, 1)) > 0.5).astype(np.float32)
    return xt, yt


def make_seed_tf2():
    name = "seed_tf2"
    fresh("k2")
    L = k2.layers
    model = k2.Sequential([
        L.GRU(256, return_sequences=True, input_shape=(None, 100)),
        L.GRU(128, return_sequences=True),
        L.TimeDistributed(L.Dense(1, activation="sigmoid")),
    ])
    rng = rng_for(name)
    randomize(model, rng, scale=0.5, cap_fan_in=True)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    xt, yt = seed_train_data(rng)
    model.train_on_batch(xt, yt)
    x = randn(rng, 2, 4, 100)
    ys = k2_predict(model, x)
    save_k2_h5(model, f"{name}.h5", x, ys, include_optimizer=SEED_OPTIMIZER)
    record(name, [f"{name}.h5"], "tf_keras", F_K2_H5,
           "Seed model GRU(256)->GRU(128)->TimeDistributed(Dense(1,sigmoid)), "
           "adam-compiled and trained one step, saved by Keras 2 as .h5",
           ["Sequential", "input_shape kwarg (config gets an implicit InputLayer 'gru_input'; "
            "model_weights/layer_names excludes it)",
            "GRU reset_after=True (default)", "stacked GRU return_sequences",
            "TimeDistributed(Dense)", "sigmoid", "training_config attr"]
           + (["optimizer_weights group (Adam)"] if SEED_OPTIMIZER else []), x, ys,
           optimizer_state=SEED_OPTIMIZER)


def make_seed_k3():
    name = "seed_k3"
    fresh("k3")
    L = k3.layers
    model = k3.Sequential([
        k3.Input(shape=(None, 100)),
        L.GRU(256, return_sequences=True),
        L.GRU(128, return_sequences=True),
        L.TimeDistributed(L.Dense(1, activation="sigmoid")),
    ])
    rng = rng_for(name)
    randomize(model, rng, scale=0.5, cap_fan_in=True)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    xt, yt = seed_train_data(rng)
    model.train_on_batch(xt, yt)
    x = randn(rng, 2, 4, 100)
    ys = k3_predict(model, x)
    if not SEED_OPTIMIZER:
        # .keras always stores the optimizer of a compiled model: save an
        # uncompiled copy with the trained weights instead.
        # (clone_model / model_from_json would copy the compile state.)
        twin = type(model).from_config(model.get_config())
        twin.set_weights(model.get_weights())
        assert not twin.compiled
        model = twin
    save_k3_keras(model, f"{name}.keras", x, ys)
    record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
           "Seed model GRU(256)->GRU(128)->TimeDistributed(Dense(1,sigmoid)), "
           "adam-compiled and trained one step, saved by Keras 3 as .keras",
           ["Sequential with Input", "GRU reset_after=True", "stacked GRU",
            "TimeDistributed(Dense)", "sigmoid"]
           + (["optimizer vars in model.weights.h5", "compile_config in config.json"]
              if SEED_OPTIMIZER else []), x, ys, optimizer_state=SEED_OPTIMIZER)


# --------------------------------------------------------------------------
# 3. reset_after=False
# --------------------------------------------------------------------------
def make_reset_before():
    name = "reset_before_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.GRU(8, reset_after=False, return_sequences=True, input_shape=(None, 5)),
            L.GRU(6, reset_after=False),
            L.Dense(3),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(randn(rng, 3, 6, 5), randn(rng, 3, 3))
        x = randn(rng, 3, 6, 5)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5,
               "GRU(8, reset_after=False, seq)->GRU(6, reset_after=False)->Dense(3); "
               "adam-compiled, one training step",
               ["GRU reset_after=False (bias shape (3*units,))", "last-step output",
                "Dense linear", "small optimizer_weights group (Adam) + training_config"],
               x, ys)

    name = "reset_before_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 5)),
            L.GRU(8, reset_after=False, return_sequences=True),
            L.GRU(6, reset_after=False),
            L.Dense(3),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        model.compile(optimizer="rmsprop", loss="mse")
        model.train_on_batch(randn(rng, 3, 6, 5), randn(rng, 3, 3))
        x = randn(rng, 3, 6, 5)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "GRU(8, reset_after=False, seq)->GRU(6, reset_after=False)->Dense(3); "
               "rmsprop-compiled, one training step",
               ["GRU reset_after=False (bias shape (3*units,))", "last-step output",
                "Dense linear", "small optimizer vars (RMSprop) + compile_config"], x, ys)


# --------------------------------------------------------------------------
# 4. hard_sigmoid recurrent activation (differs between Keras 2 and 3!)
# --------------------------------------------------------------------------
def make_hard_sigmoid():
    note = ("Keras 2 hard_sigmoid = clip(0.2*x+0.5, 0, 1); "
            "Keras 3 hard_sigmoid = clip(x/6+0.5, 0, 1) (relu6(x+3)/6)")
    name = "hard_sigmoid_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.GRU(8, recurrent_activation="hard_sigmoid", return_sequences=True,
                  input_shape=(None, 4)),
            L.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng, scale=1.0)
        x = randn(rng, 3, 7, 4, scale=3.0)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5,
               "GRU(8, hard_sigmoid, seq)->GRU(5, hard_sigmoid, reset_after=False)->Dense(2); "
               "large inputs/weights so the clip region and slope matter",
               ["recurrent_activation hard_sigmoid (Keras 2 definition)",
                "reset_after True and False"], x, ys, note=note)

    name = "hard_sigmoid_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 4)),
            L.GRU(8, recurrent_activation="hard_sigmoid", return_sequences=True),
            L.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng, scale=1.0)
        x = randn(rng, 3, 7, 4, scale=3.0)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "GRU(8, hard_sigmoid, seq)->GRU(5, hard_sigmoid, reset_after=False)->Dense(2); "
               "large inputs/weights so the clip region and slope matter",
               ["recurrent_activation hard_sigmoid (Keras 3 definition)",
                "reset_after True and False"], x, ys, note=note)


# --------------------------------------------------------------------------
# 5. Keras 3 writing legacy .h5
# --------------------------------------------------------------------------
def make_k3_legacy():
    name = "k3_legacy"
    fresh("k3")
    L = k3.layers
    model = k3.Sequential([
        k3.Input(shape=(None, 5)),
        L.GRU(7, return_sequences=True),
        L.GRU(6, recurrent_activation="hard_sigmoid", return_sequences=True),
        L.GRU(4, reset_after=False),
        L.Dense(3, activation="tanh"),
    ])
    rng = rng_for(name)
    randomize(model, rng, scale=1.0)
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(randn(rng, 3, 6, 5, scale=3.0), randn(rng, 3, 3))
    x = randn(rng, 3, 6, 5, scale=3.0)
    ys = k3_predict(model, x)
    save_k3_h5(model, f"{name}.h5", x, ys)
    record(name, [f"{name}.h5"], "keras", F_K3_H5,
           "Keras 3 legacy .h5: GRU(7,seq)->GRU(6, hard_sigmoid, seq)->"
           "GRU(4, reset_after=False)->Dense(3, tanh); adam-compiled, one step",
           ["Keras 3 writing legacy h5 (keras_version 3.x attr)",
            "hard_sigmoid must use the Keras 3 definition (x/6+0.5)",
            "reset_after True/False", "optimizer_weights in Keras 3 legacy h5",
            "InputLayer in Sequential config"], x, ys)



def make_k3_legacy_func():
    name = "k3_legacy_func"
    L = k3.layers

    def build():
        inp = k3.Input(shape=(None,), dtype="int32", name="tokens")
        h = L.Embedding(12, 4, mask_zero=True, name="emb")(inp)
        h = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi")(h)
        h = L.TimeDistributed(L.Dense(4, activation="relu"), name="td")(h)
        h = L.GRU(3, recurrent_activation="hard_sigmoid", name="gru_hs")(h)
        out = L.Dense(2, name="head")(h)
        return k3.Model(inp, out, name="legacy_func")

    fresh("k3")
    model = build()
    rng = rng_for(name)
    randomize(model, rng, scale=1.0)
    x = rng.integers(1, 12, size=(4, 6)).astype(np.int32)
    x[0, 4:] = 0
    x[1, 1:3] = 0
    x[2, :2] = 0
    ys = k3_predict(model, x)
    save_k3_h5(model, f"{name}.h5", x, ys, rebuild=build)
    record(name, [f"{name}.h5"], "keras", F_K3_H5,
           "Keras 3 legacy .h5, functional: Input(int32)->Embedding(12,4,mask_zero)->"
           "Bidirectional(GRU(5, seq))->TimeDistributed(Dense(4, relu))->"
           "GRU(3, hard_sigmoid)->Dense(2); tokens 0-padded at end/middle/start",
           ["Keras 3 legacy h5 functional config (Keras 3 inbound_nodes args/kwargs)",
            "Bidirectional + TimeDistributed + Embedding weight paths in Keras 3 legacy h5",
            "hard_sigmoid Keras 3 definition", "mask through Bidirectional/TimeDistributed",
            "no optimizer (not compiled)",
            "config contains a NotEqual op node (the Embedding mask) and explicit mask "
            "kwargs in inbound_nodes"], x, ys,
           note="Keras 3.15 itself cannot reload this file's config (\"Unknown layer: "
                "'NotEqual'\": the legacy h5 config drops the op's module); verified "
                "instead by load_weights() into a freshly built identical model")


# --------------------------------------------------------------------------
# 6. Bidirectional
# --------------------------------------------------------------------------
def make_bidir():
    name = "bidir_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 5)),
            L.Bidirectional(L.GRU(8, return_sequences=True)),
            L.GRU(6),
            L.Dense(4, activation="softmax"),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 6, 5)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "Bidirectional(GRU(8, seq), concat)->GRU(6)->Dense(4, softmax)",
               ["Bidirectional merge_mode concat", "forward_layer/backward_layer nesting",
                "softmax"], x, ys)

    name = "bidir_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.Bidirectional(L.GRU(8, return_sequences=True), input_shape=(None, 5)),
            L.GRU(6),
            L.Dense(4, activation="softmax"),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 6, 5)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5,
               "Bidirectional(GRU(8, seq), concat)->GRU(6)->Dense(4, softmax)",
               ["Bidirectional merge_mode concat", "forward_/backward_ weight paths",
                "softmax"], x, ys)

    name = "bidir_modes_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        inp = k3.Input(shape=(None, 4), name="seq_in")
        b_sum = L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode="sum",
                                name="bi_sum")(inp)
        b_mul = L.Bidirectional(L.GRU(5), merge_mode="mul", name="bi_mul")(inp)
        b_ave = L.Bidirectional(L.GRU(5, return_sequences=True, reset_after=False),
                                merge_mode="ave", name="bi_ave")(inp)
        b_none = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode=None,
                                 name="bi_none")(inp)
        b_back = L.Bidirectional(
            L.GRU(4, return_sequences=True),
            backward_layer=L.GRU(3, return_sequences=True, go_backwards=True,
                                 reset_after=False, name="custom_backward_gru"),
            merge_mode="concat", name="bi_custom")(inp)
        y0 = b_sum
        y1 = L.Dense(2, name="head_mul")(b_mul)
        y2 = b_ave
        y3, y4 = b_none
        y5 = b_back
        model = k3.Model(inp, [y0, y1, y2, y3, y4, y5], name="bidir_modes")
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 5, 4)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "Functional, one input, six outputs: Bidirectional merge_mode sum (y0), "
               "mul (+Dense, y1), ave with reset_after=False (y2), None (y3 forward, "
               "y4 backward), concat with explicit backward_layer of different size "
               "and reset_after=False (y5)",
               ["functional Model with InputLayer", "multiple outputs (output_layers)",
                "Bidirectional merge_mode sum/mul/ave/None/concat",
                "merge_mode None -> two outputs from one layer (node tensor indices)",
                "explicit backward_layer config", "Bidirectional return_sequences=False"],
               x, ys)


# --------------------------------------------------------------------------
# 6b. Bidirectional under a mask (Keras 3 sets zero_output_for_mask=True on
#     the wrapped layers when return_sequences=True)
# --------------------------------------------------------------------------
def make_bidir_mask():
    desc = ("Functional: Embedding(15, 4, mask_zero=True)->Bidirectional(GRU(5, seq), concat) "
            "[y0]->Bidirectional(GRU(3), sum)->Dense(2) [y1]; int32 tokens with 0-padding "
            "at the end (rows 0, 2), middle (row 1) and start (row 3)")
    covers = ["Bidirectional under a mask (masked steps of the sequence output)",
              "backward direction with padding", "Bidirectional return_sequences=False + sum",
              "multi-output functional (intermediate layer as output)"]

    def tokens(rng):
        x = rng.integers(1, 15, size=(5, 6)).astype(np.int32)
        x[0, 4:] = 0
        x[1, 2:4] = 0
        x[2, 3:] = 0
        x[3, :2] = 0
        return x

    name = "bidir_mask_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        inp = k3.Input(shape=(None,), dtype="int32", name="tokens")
        e = L.Embedding(15, 4, mask_zero=True, name="emb")(inp)
        s = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi_seq")(e)
        h = L.Bidirectional(L.GRU(3), merge_mode="sum", name="bi_last")(s)
        out = L.Dense(2, name="head")(h)
        model = k3.Model(inp, [s, out], name="bidir_mask")
        rng = rng_for(name)
        randomize(model, rng)
        x = tokens(rng)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP, desc, covers, x, ys)

    name = "bidir_mask_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        inp = k2.Input(shape=(None,), dtype="int32", name="tokens")
        e = L.Embedding(15, 4, mask_zero=True, name="emb")(inp)
        s = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi_seq")(e)
        h = L.Bidirectional(L.GRU(3), merge_mode="sum", name="bi_last")(s)
        out = L.Dense(2, name="head")(h)
        model = k2.Model(inp, [s, out], name="bidir_mask")
        rng = rng_for(name)
        randomize(model, rng)
        x = tokens(rng)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5, desc, covers, x, ys)


# --------------------------------------------------------------------------
# 7. Masking
# --------------------------------------------------------------------------
def masking_input(rng):
    x = randn(rng, 5, 7, 3)
    x[0, 5:] = 0.0       # end padding (2 steps)
    x[1, 2:4] = 0.0      # middle (2 steps)
    x[2, :2] = 0.0       # start (2 steps)
    x[3, 4:] = 0.0       # end padding (3 steps)
    # row 4: no padding
    return x


def make_masking():
    desc = ("Masking(0.0)->GRU(8, seq)->GRU(5)->Dense(2); zero timesteps at the end "
            "(rows 0, 3), middle (row 1, t=2..3), start (row 2, t=0..1), none (row 4)")
    covers = ["Masking layer", "mask propagation through stacked GRU",
              "masked steps keep previous state", "padding at end/middle/start"]
    name = "masking_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 3)),
            L.Masking(mask_value=0.0),
            L.GRU(8, return_sequences=True),
            L.GRU(5),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = masking_input(rng)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP, desc, covers, x, ys)

    name = "masking_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.Masking(mask_value=0.0, input_shape=(None, 3)),
            L.GRU(8, return_sequences=True),
            L.GRU(5),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = masking_input(rng)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5, desc, covers, x, ys)


# --------------------------------------------------------------------------
# 8. Embedding(mask_zero=True)
# --------------------------------------------------------------------------
def embedding_input(rng):
    x = rng.integers(1, 20, size=(4, 6)).astype(np.int32)
    x[0, 4:] = 0   # end padding
    x[1, 2] = 0    # middle
    x[2, 3:] = 0   # end padding
    # row 3: no padding
    return x


def make_embedding():
    desc = ("Embedding(20, 6, mask_zero=True)->GRU(7, seq)->TimeDistributed(Dense(3)); "
            "int32 token ids with 0-padding at the end (rows 0, 2) and middle (row 1)")
    covers = ["Embedding layer (embeddings weight)", "mask_zero mask propagation",
              "int32 input", "TimeDistributed(Dense) after masked GRU"]
    name = "embedding_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None,), dtype="int32"),
            L.Embedding(20, 6, mask_zero=True),
            L.GRU(7, return_sequences=True),
            L.TimeDistributed(L.Dense(3)),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = embedding_input(rng)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP, desc, covers, x, ys)

    name = "embedding_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.Embedding(20, 6, mask_zero=True, input_shape=(None,)),
            L.GRU(7, return_sequences=True),
            L.TimeDistributed(L.Dense(3)),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = embedding_input(rng)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5, desc, covers, x, ys)


# --------------------------------------------------------------------------
# 9. go_backwards
# --------------------------------------------------------------------------
def make_go_backwards():
    name = "go_backwards_k3"
    fresh("k3")
    L = k3.layers
    model = k3.Sequential([
        k3.Input(shape=(None, 3)),
        L.GRU(6, go_backwards=True, return_sequences=True),
        L.GRU(4, go_backwards=True),
        L.Dense(1),
    ])
    rng = rng_for(name)
    randomize(model, rng)
    x = randn(rng, 3, 6, 3)
    ys = k3_predict(model, x)
    save_k3_keras(model, f"{name}.keras", x, ys)
    record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
           "GRU(6, go_backwards, seq)->GRU(4, go_backwards)->Dense(1)",
           ["go_backwards=True (sequence output stays in reversed order)",
            "stacked go_backwards"], x, ys)


# --------------------------------------------------------------------------
# 10. use_bias=False
# --------------------------------------------------------------------------
def make_no_bias():
    desc = "GRU(6, use_bias=False, seq)->GRU(4, use_bias=False, reset_after=False)->Dense(2)"
    covers = ["GRU use_bias=False (only kernel + recurrent_kernel)",
              "reset_after True and False without bias"]
    name = "no_bias_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 4)),
            L.GRU(6, use_bias=False, return_sequences=True),
            L.GRU(4, use_bias=False, reset_after=False),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 5, 4)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP, desc, covers, x, ys)

    name = "no_bias_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.GRU(6, use_bias=False, return_sequences=True, input_shape=(None, 4)),
            L.GRU(4, use_bias=False, reset_after=False),
            L.Dense(2),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 5, 4)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5, desc, covers, x, ys)


# --------------------------------------------------------------------------
# 11. stateful
# --------------------------------------------------------------------------
def make_stateful():
    name = "stateful_k3"
    fresh("k3")
    L = k3.layers
    B, T, F, CH = 2, 12, 3, 3
    model = k3.Sequential([
        k3.Input(batch_shape=(B, None, F)),
        L.GRU(6, stateful=True, return_sequences=True),
        L.Dense(2),
    ])
    rng = rng_for(name)
    randomize(model, rng)
    x = randn(rng, B, T, F)
    chunks = np.split(x, CH, axis=1)

    def run_chunks(m):
        m.reset_states() if hasattr(m, "reset_states") else None
        return np.concatenate([np.asarray(m(c, training=False)) for c in chunks], axis=1)

    # Save with zero states, before any chunk is run.
    path = OUT / f"{name}.keras"
    if path.exists():
        path.unlink()
    model.save(str(path))
    y = run_chunks(model)

    # Cross-check: a non-stateful twin on the full sequence gives the same result,
    # i.e. the state really carried between the chunks.
    twin = k3.Sequential([
        k3.Input(shape=(None, F)),
        L.GRU(6, return_sequences=True),
        L.Dense(2),
    ])
    twin.set_weights(model.get_weights())
    y_full = np.asarray(twin.predict(x, verbose=0))
    check_close(name + " (vs non-stateful full sequence)", [y], [y_full])
    y_nocarry = np.concatenate(
        [np.asarray(twin.predict(c, verbose=0)) for c in chunks], axis=1)
    assert not np.allclose(y, y_nocarry, atol=1e-3), "states did not matter?"

    re = k3.models.load_model(str(path), compile=False)
    check_close(name + " (reload)", [run_chunks(re)], [y])
    record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
           "Stateful GRU(6, seq, batch_size=2)->Dense(2); x (2,12,3) fed as 3 chunks "
           "of T=4 without resetting states; y = concatenated chunk outputs",
           ["stateful=True", "fixed batch_shape in InputLayer", "state carried across calls"],
           x, [y], chunks=CH, npz_extra={"chunks": np.int32(CH)})


# --------------------------------------------------------------------------
# 12. weights-only files + JSON config
# --------------------------------------------------------------------------
def make_weights_only():
    name = "weights_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 4)),
            L.GRU(7, return_sequences=True, reset_after=False),
            L.GRU(5),
            L.Dense(3),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 6, 4)
        ys = k3_predict(model, x)
        wpath = OUT / f"{name}.weights.h5"
        if wpath.exists():
            wpath.unlink()
        model.save_weights(str(wpath))
        cfg = model.to_json()
        (OUT / f"{name}.json").write_text(json.dumps(json.loads(cfg), indent=1) + "\n")
        re = k3.models.model_from_json(cfg)
        re.load_weights(str(wpath))
        check_close(name, k3_predict(re, x), ys)
        record(name, [f"{name}.weights.h5", f"{name}.json"], "keras", F_K3_W,
               "Keras 3 save_weights('x.weights.h5') + model.to_json(): "
               "GRU(7, seq, reset_after=False)->GRU(5)->Dense(3)",
               ["Keras 3 weights-only h5 layout", "to_json config (Keras 3 style)",
                "reset_after True and False"], x, ys)

    name = "weights_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        model = k2.Sequential([
            L.GRU(7, return_sequences=True, reset_after=False, input_shape=(None, 4)),
            L.GRU(5),
            L.Dense(3),
        ])
        rng = rng_for(name)
        randomize(model, rng)
        x = randn(rng, 3, 6, 4)
        ys = k2_predict(model, x)
        wpath = OUT / f"{name}.h5"
        if wpath.exists():
            wpath.unlink()
        model.save_weights(str(wpath), save_format="h5")
        cfg = model.to_json()
        (OUT / f"{name}.json").write_text(json.dumps(json.loads(cfg), indent=1) + "\n")
        re = k2.models.model_from_json(cfg)
        re.load_weights(str(wpath))
        check_close(name, k2_predict(re, x), ys)
        record(name, [f"{name}.h5", f"{name}.json"], "tf_keras", F_K2_W,
               "Keras 2 save_weights('x.h5') + model.to_json(): "
               "GRU(7, seq, reset_after=False)->GRU(5)->Dense(3)",
               ["Keras 2 weights-only h5 layout (root layer_names, per-layer weight_names)",
                "to_json config (Keras 2 style)", "reset_after True and False"], x, ys)


# --------------------------------------------------------------------------
# 13/14. other activations, identity layers, functional with explicit Input
# --------------------------------------------------------------------------
def make_activations():
    name = "act_seq_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        model = k3.Sequential([
            k3.Input(shape=(None, 4)),
            L.GRU(6, activation="relu", recurrent_activation="sigmoid",
                  return_sequences=True),
            L.Dropout(0.3),
            L.GRU(5, activation="linear", return_sequences=True),
            L.SpatialDropout1D(0.2),
            L.TimeDistributed(L.Dense(6, activation="relu")),
            L.Dense(5, activation="tanh"),
            L.Dense(4, activation="elu"),
            L.Dense(4, activation="softmax"),
        ])
        rng = rng_for(name)
        randomize(model, rng, scale=0.7)
        x = randn(rng, 3, 6, 4)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "GRU(6, activation=relu, seq)->Dropout->GRU(5, activation=linear, seq)->"
               "SpatialDropout1D->TimeDistributed(Dense(6, relu))->Dense(5, tanh) on 3-D->"
               "Dense(4, elu)->Dense(4, softmax)",
               ["GRU activation relu / linear", "Dropout & SpatialDropout1D (identity)",
                "Dense applied to 3-D input (last axis)",
                "Dense activations relu, tanh, elu, softmax (over last axis of 3-D)"], x, ys)

    name = "act_func_k3"
    if wanted(name):
        fresh("k3")
        L = k3.layers
        inp = k3.Input(shape=(None, 3), name="features")
        h = L.GRU(5, activation="sigmoid", return_sequences=True, name="gru_sig")(inp)
        h = L.GRU(6, name="gru_last")(h)
        h = L.Dense(6, activation="selu", name="d_selu")(h)
        h = L.Dropout(0.5)(h)
        h = L.Dense(6, name="d_lin")(h)
        h = L.Activation("softplus", name="act_softplus")(h)
        h = L.Dense(5, activation="swish", name="d_swish")(h)
        h = L.Dense(5, activation="silu", name="d_silu")(h)
        h = L.Dense(4, activation="gelu", name="d_gelu")(h)
        h = L.Activation("elu", name="act_elu")(h)
        out = L.Dense(3, activation="linear", name="d_linear")(h)
        model = k3.Model(inp, out, name="act_func")
        rng = rng_for(name)
        randomize(model, rng, scale=0.8)
        x = randn(rng, 3, 5, 3, scale=1.5)
        ys = k3_predict(model, x)
        save_k3_keras(model, f"{name}.keras", x, ys)
        record(name, [f"{name}.keras"], "keras", F_K3_ZIP,
               "Functional with explicit Input: GRU(5, activation=sigmoid, seq)->GRU(6)->"
               "Dense(selu)->Dropout->Dense->Activation(softplus)->Dense(swish)->"
               "Dense(silu)->Dense(gelu)->Activation(elu)->Dense(linear)",
               ["functional Model with InputLayer (inbound_nodes / input_layers)",
                "GRU activation sigmoid", "selu, softplus, swish, silu, gelu, elu, linear",
                "Activation layer", "Dropout"], x, ys)

    name = "act_func_tf2"
    if wanted(name):
        fresh("k2")
        L = k2.layers
        inp = k2.Input(shape=(None, 3), name="features")
        h = L.GRU(5, activation="relu", return_sequences=True, name="gru_relu")(inp)
        h = L.SpatialDropout1D(0.2)(h)
        h = L.GRU(6, activation="sigmoid", name="gru_sig")(h)
        h = L.Dense(6, activation="selu", name="d_selu")(h)
        h = L.Dropout(0.5)(h)
        h = L.Dense(6, activation="softplus", name="d_softplus")(h)
        h = L.Dense(5, activation="swish", name="d_swish")(h)
        h = L.Dense(5, activation="gelu", name="d_gelu")(h)
        h = L.Activation("elu", name="act_elu")(h)
        h = L.Dense(4, activation="tanh", name="d_tanh")(h)
        out = L.Dense(3, activation="softmax", name="d_softmax")(h)
        model = k2.Model(inp, out, name="act_func")
        rng = rng_for(name)
        randomize(model, rng, scale=0.8)
        x = randn(rng, 3, 5, 3, scale=1.5)
        ys = k2_predict(model, x)
        save_k2_h5(model, f"{name}.h5", x, ys)
        record(name, [f"{name}.h5"], "tf_keras", F_K2_H5,
               "Keras 2 functional with explicit Input: GRU(5, relu, seq)->SpatialDropout1D->"
               "GRU(6, sigmoid)->Dense(selu)->Dropout->Dense(softplus)->Dense(swish)->"
               "Dense(gelu)->Activation(elu)->Dense(tanh)->Dense(softmax)",
               ["Keras 2 functional Model config (InputLayer, inbound_nodes lists)",
                "GRU activation relu / sigmoid", "Keras 2 activation names incl. gelu/swish",
                "SpatialDropout1D, Dropout, Activation"], x, ys)


# --------------------------------------------------------------------------
def main(argv=None) -> int:
    global ONLY, SEED_OPTIMIZER
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma separated fixture names (manifest is merged)")
    ap.add_argument("--seed-without-optimizer", action="store_true",
                    help="save the two seed models without optimizer state "
                         "(~1.7 MB each instead of ~5.1 MB)")
    args = ap.parse_args(argv)
    SEED_OPTIMIZER = not args.seed_without_optimizer
    if args.only:
        ONLY = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)

    steps = [
        (("seed_tf2",), make_seed_tf2),
        (("seed_k3",), make_seed_k3),
        (("reset_before_tf2", "reset_before_k3"), make_reset_before),
        (("hard_sigmoid_tf2", "hard_sigmoid_k3"), make_hard_sigmoid),
        (("k3_legacy",), make_k3_legacy),
        (("k3_legacy_func",), make_k3_legacy_func),
        (("bidir_k3", "bidir_tf2", "bidir_modes_k3"), make_bidir),
        (("bidir_mask_k3", "bidir_mask_tf2"), make_bidir_mask),
        (("masking_k3", "masking_tf2"), make_masking),
        (("embedding_k3", "embedding_tf2"), make_embedding),
        (("go_backwards_k3",), make_go_backwards),
        (("no_bias_k3", "no_bias_tf2"), make_no_bias),
        (("stateful_k3",), make_stateful),
        (("weights_k3", "weights_tf2"), make_weights_only),
        (("act_seq_k3", "act_func_k3", "act_func_tf2"), make_activations),
    ]
    for names, fn in steps:
        if any(wanted(n) for n in names):
            print(f"[{fn.__name__}]")
            fn()

    manifest_path = OUT / "manifest.json"
    entries = FIXTURES
    if ONLY is not None and manifest_path.exists():
        old = json.loads(manifest_path.read_text())["fixtures"]
        done = {e["name"] for e in FIXTURES}
        entries = [e for e in old if e["name"] not in done] + FIXTURES
    order = [n for names, _ in steps for n in names]
    entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else 999)
    manifest = {
        "generator": "tools/make_keras_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tf_keras": k2.__version__,
            "keras": k3.__version__,
            "keras_backend": k3.backend.backend(),
            "numpy": np.__version__,
            "h5py": h5py.__version__,
        },
        "npz_keys": "x = model input; y (single output) or y0, y1, ... (multi-output, "
                    "in model output order); stateful_k3 also has chunks",
        "seed_optimizer_state": SEED_OPTIMIZER,
        "reload_check": f"each file reloaded in its own framework, allclose rtol={RTOL} atol={ATOL}",
        "fixtures": entries,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"manifest: {len(entries)} fixtures, directory total {total/1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
