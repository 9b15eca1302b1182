#!/usr/bin/env python3
"""Generate real Keras checkpoints used as test fixtures for gru_infer.

Writes everything into ``tests/fixtures/keras/`` (relative to the repo root)
unless ``--out DIR`` says otherwise.
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

Most models are written by both Keras 2 (``NAME_tf2``) and Keras 3
(``NAME_k3``): each is defined once by a ``build(K)`` function taking the Keras
module, and ``fixture()`` turns it into one framework's files.

Usage: make_keras_fixtures.py [--only NAME[,NAME...]] [--seed-without-optimizer]
                              [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU math
os.environ.pop("TF_USE_LEGACY_KERAS", None)  # `keras` must stay Keras 3

import h5py  # noqa: E402
import keras as k3  # noqa: E402  (Keras 3)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as k2  # noqa: E402  (Keras 2 API)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "keras"  # --out replaces it

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


def predict(model, x) -> list[np.ndarray]:
    return as_list(model.predict(x, verbose=0))


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


def out_path(fname: str) -> Path:
    """OUT / fname with any previous file removed (save() would not always replace it)."""
    path = OUT / fname
    if path.exists():
        path.unlink()
    return path


def record(name, files, writer, fmt, description, covers, x, ys, **extra):
    """Write NAME.npz and append a manifest entry."""
    arrays = {"x": x}
    arrays.update(out_dict(ys))
    arrays.update(extra.pop("npz_extra", {}))
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


def fresh(K) -> None:
    """Reset layer-name counters so layer names (gru, gru_1, ...) are stable."""
    K.backend.clear_session()
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
# Keras 2 vs Keras 3: what differs between the two writers
# --------------------------------------------------------------------------
class Flavor(NamedTuple):
    tag: str     # fixture-name suffix
    writer: str  # manifest "writer": the package that wrote the file
    ext: str     # full-model checkpoint extension
    fmt: str     # manifest format of that checkpoint


FLAVOR = {k2: Flavor("tf2", "tf_keras", ".h5", F_K2_H5),
          k3: Flavor("k3", "keras", ".keras", F_K3_ZIP)}


def named(base: str, K) -> str:
    """Name of one framework's variant: masking -> masking_k3 / masking_tf2."""
    return f"{base}_{FLAVOR[K].tag}"


def sequential(K, shape, layers, dtype=None):
    """A Sequential model for inputs of `shape` (no batch axis).

    `layers(L, inp)` returns the layer list and must pass `**inp` to the first
    layer.  Keras 2 declares the input there (input_shape=, so its config gets
    the implicit InputLayer '<first layer>_input'); Keras 3 gets a leading
    k3.Input instead.  `dtype` only goes to that k3.Input: the Keras 2
    fixtures were made without one."""
    if K is k2:
        return k2.Sequential(layers(k2.layers, {"input_shape": shape}))
    head = k3.Input(shape=shape, **({"dtype": dtype} if dtype else {}))
    return k3.Sequential([head] + layers(k3.layers, {}))


def uncompiled_copy(model):
    """The same Keras 3 model without its compile state and optimizer.

    .keras always stores the optimizer of a compiled model (and clone_model /
    model_from_json would copy the compile state)."""
    twin = type(model).from_config(model.get_config())
    twin.set_weights(model.get_weights())
    assert not twin.compiled
    return twin


# Savers: save(K, model, name, x, ys) writes the checkpoint file(s), reloads
# them in K and checks they reproduce ys; returns (files, manifest format).
def save_model(K, model, name, x, ys, include_optimizer=True, reload_check=True):
    """Full model in K's own format: Keras 2 legacy .h5 / Keras 3 .keras.
    reload_check=False for files the framework itself reloads wrongly (the
    outputs recorded are still the in-memory model's)."""
    fname = name + FLAVOR[K].ext
    path = out_path(fname)
    if K is k2:
        model.save(str(path), save_format="h5", include_optimizer=include_optimizer)
    else:
        if not include_optimizer:
            model = uncompiled_copy(model)
        model.save(str(path))
    if reload_check:
        re = K.models.load_model(str(path), compile=False)
        check_close(fname, predict(re, x), ys)
    return [fname], FLAVOR[K].fmt


def save_k3_h5(K, model, name, x, ys, rebuild=None):
    """Keras 3 writing the legacy HDF5 format.

    rebuild: if given, rebuild(K) returns a fresh model of the same
    architecture; the file is then verified through load_weights() only
    (for files whose config Keras 3 itself cannot deserialize)."""
    assert K is k3
    fname = f"{name}.h5"
    path = out_path(fname)
    model.save(str(path))  # legacy HDF5 (Keras 3 warns, that is expected)
    if rebuild is None:
        re = k3.models.load_model(str(path), compile=False)
    else:
        try:
            k3.models.load_model(str(path), compile=False)
            raise AssertionError(f"{fname}: expected Keras 3 to fail reloading the config")
        except ValueError as e:
            assert "NotEqual" in str(e), e
        re = rebuild(K)
        re.load_weights(str(path))
    check_close(fname, predict(re, x), ys)
    return [fname], F_K3_H5


def save_weights_only(K, model, name, x, ys):
    """save_weights() + to_json(), verified by rebuilding from the JSON."""
    if K is k2:
        wname, fmt, kwargs = f"{name}.h5", F_K2_W, {"save_format": "h5"}
    else:  # Keras 3 insists on the .weights.h5 suffix
        wname, fmt, kwargs = f"{name}.weights.h5", F_K3_W, {}
    wpath = out_path(wname)
    model.save_weights(str(wpath), **kwargs)
    cfg = model.to_json()
    (OUT / f"{name}.json").write_text(json.dumps(json.loads(cfg), indent=1) + "\n")
    re = K.models.model_from_json(cfg)
    re.load_weights(str(wpath))
    check_close(name, predict(re, x), ys)
    return [wname, f"{name}.json"], fmt


def fixture(K, name, build, make_x, description, covers, *, scale=0.5,
            cap_fan_in=False, optimizer=None, loss="mse", train_data=None,
            save=save_model, **extra):
    """Build one model with Keras module K, randomize its weights, optionally
    compile and train it one step on train_data(rng), predict make_x(rng),
    save + reload-check it and record it (extra goes to the manifest entry).

    The rng draws happen in this order (weights, training data, input); the
    committed fixtures depend on it."""
    if not wanted(name):
        return
    fresh(K)
    model = build(K)
    rng = rng_for(name)
    randomize(model, rng, scale=scale, cap_fan_in=cap_fan_in)
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss=loss)
        model.train_on_batch(*train_data(rng))
    x = make_x(rng)
    ys = predict(model, x)
    files, fmt = save(K, model, name, x, ys)
    record(name, files, FLAVOR[K].writer, fmt, description, covers, x, ys, **extra)


# --------------------------------------------------------------------------
# 1/2. the seed model
# --------------------------------------------------------------------------
def seed_train_data(rng):
    xt = randn(rng, 4, 4, 100)
    yt = (rng.random((4, 4, 1)) > 0.5).astype(np.float32)
    return xt, yt


def make_seed():
    def build(K):
        return sequential(K, (None, 100), lambda L, inp: [
            L.GRU(256, return_sequences=True, **inp),
            L.GRU(128, return_sequences=True),
            L.TimeDistributed(L.Dense(1, activation="sigmoid")),
        ])

    saved_as = {k2: "saved by Keras 2 as .h5", k3: "saved by Keras 3 as .keras"}
    covers = {
        k2: ["Sequential", "input_shape kwarg (config gets an implicit InputLayer "
             "'gru_input'; model_weights/layer_names excludes it)",
             "GRU reset_after=True (default)", "stacked GRU return_sequences",
             "TimeDistributed(Dense)", "sigmoid", "training_config attr"]
            + (["optimizer_weights group (Adam)"] if SEED_OPTIMIZER else []),
        k3: ["Sequential with Input", "GRU reset_after=True", "stacked GRU",
             "TimeDistributed(Dense)", "sigmoid"]
            + (["optimizer vars in model.weights.h5", "compile_config in config.json"]
               if SEED_OPTIMIZER else []),
    }
    for K in (k2, k3):
        fixture(K, named("seed", K), build, lambda rng: randn(rng, 2, 4, 100),
                "Seed model GRU(256)->GRU(128)->TimeDistributed(Dense(1,sigmoid)), "
                "adam-compiled and trained one step, " + saved_as[K], covers[K],
                cap_fan_in=True, optimizer="adam", loss="binary_crossentropy",
                train_data=seed_train_data,
                save=functools.partial(save_model, include_optimizer=SEED_OPTIMIZER),
                optimizer_state=SEED_OPTIMIZER)


# --------------------------------------------------------------------------
# 3. reset_after=False
# --------------------------------------------------------------------------
def make_reset_before():
    def build(K):
        return sequential(K, (None, 5), lambda L, inp: [
            L.GRU(8, reset_after=False, return_sequences=True, **inp),
            L.GRU(6, reset_after=False),
            L.Dense(3),
        ])

    # Different optimizers, so that both optimizer-state layouts get covered.
    variants = [(k2, "adam", "small optimizer_weights group (Adam) + training_config"),
                (k3, "rmsprop", "small optimizer vars (RMSprop) + compile_config")]
    for K, optimizer, optimizer_cover in variants:
        fixture(K, named("reset_before", K), build, lambda rng: randn(rng, 3, 6, 5),
                "GRU(8, reset_after=False, seq)->GRU(6, reset_after=False)->Dense(3); "
                f"{optimizer}-compiled, one training step",
                ["GRU reset_after=False (bias shape (3*units,))", "last-step output",
                 "Dense linear", optimizer_cover],
                optimizer=optimizer,
                train_data=lambda rng: (randn(rng, 3, 6, 5), randn(rng, 3, 3)))


# --------------------------------------------------------------------------
# 4. hard_sigmoid recurrent activation (differs between Keras 2 and 3!)
# --------------------------------------------------------------------------
def make_hard_sigmoid():
    def build(K):
        return sequential(K, (None, 4), lambda L, inp: [
            L.GRU(8, recurrent_activation="hard_sigmoid", return_sequences=True, **inp),
            L.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False),
            L.Dense(2),
        ])

    for K in (k2, k3):
        major = 2 if K is k2 else 3
        fixture(K, named("hard_sigmoid", K), build, lambda rng: randn(rng, 3, 7, 4, scale=3.0),
                "GRU(8, hard_sigmoid, seq)->GRU(5, hard_sigmoid, reset_after=False)->Dense(2); "
                "large inputs/weights so the clip region and slope matter",
                [f"recurrent_activation hard_sigmoid (Keras {major} definition)",
                 "reset_after True and False"],
                scale=1.0,
                note="Keras 2 hard_sigmoid = clip(0.2*x+0.5, 0, 1); "
                     "Keras 3 hard_sigmoid = clip(x/6+0.5, 0, 1) (relu6(x+3)/6)")


# --------------------------------------------------------------------------
# 5. Keras 3 writing legacy .h5
# --------------------------------------------------------------------------
def make_k3_legacy():
    def build(K):
        return sequential(K, (None, 5), lambda L, inp: [
            L.GRU(7, return_sequences=True, **inp),
            L.GRU(6, recurrent_activation="hard_sigmoid", return_sequences=True),
            L.GRU(4, reset_after=False),
            L.Dense(3, activation="tanh"),
        ])

    fixture(k3, "k3_legacy", build, lambda rng: randn(rng, 3, 6, 5, scale=3.0),
            "Keras 3 legacy .h5: GRU(7,seq)->GRU(6, hard_sigmoid, seq)->"
            "GRU(4, reset_after=False)->Dense(3, tanh); adam-compiled, one step",
            ["Keras 3 writing legacy h5 (keras_version 3.x attr)",
             "hard_sigmoid must use the Keras 3 definition (x/6+0.5)",
             "reset_after True/False", "optimizer_weights in Keras 3 legacy h5",
             "InputLayer in Sequential config"],
            scale=1.0, optimizer="adam",
            train_data=lambda rng: (randn(rng, 3, 6, 5, scale=3.0), randn(rng, 3, 3)),
            save=save_k3_h5)


def make_k3_legacy_func():
    def build(K):
        L = K.layers
        inp = K.Input(shape=(None,), dtype="int32", name="tokens")
        h = L.Embedding(12, 4, mask_zero=True, name="emb")(inp)
        h = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi")(h)
        h = L.TimeDistributed(L.Dense(4, activation="relu"), name="td")(h)
        h = L.GRU(3, recurrent_activation="hard_sigmoid", name="gru_hs")(h)
        out = L.Dense(2, name="head")(h)
        return K.Model(inp, out, name="legacy_func")

    def tokens(rng):
        x = rng.integers(1, 12, size=(4, 6)).astype(np.int32)
        x[0, 4:] = 0
        x[1, 1:3] = 0
        x[2, :2] = 0
        return x

    fixture(k3, "k3_legacy_func", build, tokens,
            "Keras 3 legacy .h5, functional: Input(int32)->Embedding(12,4,mask_zero)->"
            "Bidirectional(GRU(5, seq))->TimeDistributed(Dense(4, relu))->"
            "GRU(3, hard_sigmoid)->Dense(2); tokens 0-padded at end/middle/start",
            ["Keras 3 legacy h5 functional config (Keras 3 inbound_nodes args/kwargs)",
             "Bidirectional + TimeDistributed + Embedding weight paths in Keras 3 legacy h5",
             "hard_sigmoid Keras 3 definition", "mask through Bidirectional/TimeDistributed",
             "no optimizer (not compiled)",
             "config contains a NotEqual op node (the Embedding mask) and explicit mask "
             "kwargs in inbound_nodes"],
            scale=1.0, save=functools.partial(save_k3_h5, rebuild=build),
            note="Keras 3.15 itself cannot reload this file's config (\"Unknown layer: "
                 "'NotEqual'\": the legacy h5 config drops the op's module); verified "
                 "instead by load_weights() into a freshly built identical model")


# --------------------------------------------------------------------------
# 6. Bidirectional
# --------------------------------------------------------------------------
def make_bidir():
    def build(K):
        return sequential(K, (None, 5), lambda L, inp: [
            L.Bidirectional(L.GRU(8, return_sequences=True), **inp),
            L.GRU(6),
            L.Dense(4, activation="softmax"),
        ])

    nesting = {k3: "forward_layer/backward_layer nesting",
               k2: "forward_/backward_ weight paths"}
    for K in (k3, k2):
        fixture(K, named("bidir", K), build, lambda rng: randn(rng, 3, 6, 5),
                "Bidirectional(GRU(8, seq), concat)->GRU(6)->Dense(4, softmax)",
                ["Bidirectional merge_mode concat", nesting[K], "softmax"])

    def build_modes(K):
        L = K.layers
        inp = K.Input(shape=(None, 4), name="seq_in")
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
        return K.Model(inp, [y0, y1, y2, y3, y4, y5], name="bidir_modes")

    fixture(k3, "bidir_modes_k3", build_modes, lambda rng: randn(rng, 3, 5, 4),
            "Functional, one input, six outputs: Bidirectional merge_mode sum (y0), "
            "mul (+Dense, y1), ave with reset_after=False (y2), None (y3 forward, "
            "y4 backward), concat with explicit backward_layer of different size "
            "and reset_after=False (y5)",
            ["functional Model with InputLayer", "multiple outputs (output_layers)",
             "Bidirectional merge_mode sum/mul/ave/None/concat",
             "merge_mode None -> two outputs from one layer (node tensor indices)",
             "explicit backward_layer config", "Bidirectional return_sequences=False"])


# --------------------------------------------------------------------------
# 6b. Bidirectional under a mask (Keras 3 sets zero_output_for_mask=True on
#     the wrapped layers when return_sequences=True)
# --------------------------------------------------------------------------
def make_bidir_mask():
    def build(K):
        L = K.layers
        inp = K.Input(shape=(None,), dtype="int32", name="tokens")
        e = L.Embedding(15, 4, mask_zero=True, name="emb")(inp)
        s = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi_seq")(e)
        h = L.Bidirectional(L.GRU(3), merge_mode="sum", name="bi_last")(s)
        out = L.Dense(2, name="head")(h)
        return K.Model(inp, [s, out], name="bidir_mask")

    def tokens(rng):
        x = rng.integers(1, 15, size=(5, 6)).astype(np.int32)
        x[0, 4:] = 0
        x[1, 2:4] = 0
        x[2, 3:] = 0
        x[3, :2] = 0
        return x

    for K in (k3, k2):
        fixture(K, named("bidir_mask", K), build, tokens,
                "Functional: Embedding(15, 4, mask_zero=True)->Bidirectional(GRU(5, seq), "
                "concat) [y0]->Bidirectional(GRU(3), sum)->Dense(2) [y1]; int32 tokens with "
                "0-padding at the end (rows 0, 2), middle (row 1) and start (row 3)",
                ["Bidirectional under a mask (masked steps of the sequence output)",
                 "backward direction with padding",
                 "Bidirectional return_sequences=False + sum",
                 "multi-output functional (intermediate layer as output)"])


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
    def build(K):
        return sequential(K, (None, 3), lambda L, inp: [
            L.Masking(mask_value=0.0, **inp),
            L.GRU(8, return_sequences=True),
            L.GRU(5),
            L.Dense(2),
        ])

    for K in (k3, k2):
        fixture(K, named("masking", K), build, masking_input,
                "Masking(0.0)->GRU(8, seq)->GRU(5)->Dense(2); zero timesteps at the end "
                "(rows 0, 3), middle (row 1, t=2..3), start (row 2, t=0..1), none (row 4)",
                ["Masking layer", "mask propagation through stacked GRU",
                 "masked steps keep previous state", "padding at end/middle/start"])


def make_func_masking():
    """Functional models with Masking: Keras 3 writes the mask as op nodes
    (NotEqual, then Any over the features) passed to the GRUs as mask=;
    Keras 2 keeps it implicit.  Also ReLU and Softmax as layers."""
    def build(K):
        L = K.layers
        inp = K.Input(shape=(None, 3), name="frames")
        h = L.Masking(mask_value=0.0)(inp)
        h = L.GRU(6, return_sequences=True)(h)
        h = L.ReLU()(h)
        h = L.GRU(4)(h)
        out = L.Softmax()(L.Dense(3)(h))
        return K.Model(inp, out, name="func_masking")

    for K in (k3, k2):
        fixture(K, named("func_masking", K), build, masking_input,
                "functional Masking(0.0)->GRU(6, seq)->ReLU layer->GRU(4)->Dense(3)->Softmax "
                "layer; zero timesteps at the end, middle and start",
                ["functional Masking (Keras 3: NotEqual + Any op nodes and mask= kwargs)",
                 "ReLU and Softmax layers"])
    fixture(k3, "func_masking_k3_legacy", build, masking_input,
            "the same model saved by Keras 3 as legacy .h5",
            ["Keras 3 legacy h5 with NotEqual/Any op nodes"],
            save=functools.partial(save_k3_h5, rebuild=build))


def make_bidir_legacy_paths():
    """Legacy .h5 lists trainable weights first, so a frozen forward half moves
    behind the backward one; and layer or model names that start with
    forward_/backward_ appear in every weight path.  Weights must be told
    apart by the sublayer's place in the path, not by position or prefix."""
    def build(K):
        L = K.layers
        inp = K.Input(shape=(None, 4))
        frozen = L.Bidirectional(L.GRU(5, return_sequences=True), name="backward_encoder")
        h = frozen(inp)
        h = L.Bidirectional(L.GRU(3, name="forward"), name="forward_summary")(h)
        model = K.Model(inp, L.Dense(2)(h), name="forward_model")
        frozen.forward_layer.trainable = False
        return model

    for K in (k2, k3):
        fixture(K, named("bidir_legacy_paths", K), build, lambda rng: randn(rng, 3, 6, 4),
                "legacy .h5: Bidirectional 'backward_encoder' with a frozen forward half -> "
                "Bidirectional(GRU 'forward') 'forward_summary' -> Dense, model 'forward_model'",
                ["legacy h5 weight order with a frozen Bidirectional half (trainable first)",
                 "layer and model names starting with forward_/backward_ in weight paths"],
                save=functools.partial(save_model, reload_check=False) if K is k2 else save_k3_h5,
                note="tf_keras reloads its own file wrongly (it assigns the frozen half's "
                     "weights by position); the outputs are the in-memory model's" if K is k2
                     else "")


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
    def build(K):
        return sequential(K, (None,), lambda L, inp: [
            L.Embedding(20, 6, mask_zero=True, **inp),
            L.GRU(7, return_sequences=True),
            L.TimeDistributed(L.Dense(3)),
        ], dtype="int32")

    for K in (k3, k2):
        fixture(K, named("embedding", K), build, embedding_input,
                "Embedding(20, 6, mask_zero=True)->GRU(7, seq)->TimeDistributed(Dense(3)); "
                "int32 token ids with 0-padding at the end (rows 0, 2) and middle (row 1)",
                ["Embedding layer (embeddings weight)", "mask_zero mask propagation",
                 "int32 input", "TimeDistributed(Dense) after masked GRU"])


# --------------------------------------------------------------------------
# 9. go_backwards
# --------------------------------------------------------------------------
def make_go_backwards():
    def build(K):
        return sequential(K, (None, 3), lambda L, inp: [
            L.GRU(6, go_backwards=True, return_sequences=True, **inp),
            L.GRU(4, go_backwards=True),
            L.Dense(1),
        ])

    fixture(k3, "go_backwards_k3", build, lambda rng: randn(rng, 3, 6, 3),
            "GRU(6, go_backwards, seq)->GRU(4, go_backwards)->Dense(1)",
            ["go_backwards=True (sequence output stays in reversed order)",
             "stacked go_backwards"])


# --------------------------------------------------------------------------
# 10. use_bias=False
# --------------------------------------------------------------------------
def make_no_bias():
    def build(K):
        return sequential(K, (None, 4), lambda L, inp: [
            L.GRU(6, use_bias=False, return_sequences=True, **inp),
            L.GRU(4, use_bias=False, reset_after=False),
            L.Dense(2),
        ])

    for K in (k3, k2):
        fixture(K, named("no_bias", K), build, lambda rng: randn(rng, 3, 5, 4),
                "GRU(6, use_bias=False, seq)->GRU(4, use_bias=False, reset_after=False)"
                "->Dense(2)",
                ["GRU use_bias=False (only kernel + recurrent_kernel)",
                 "reset_after True and False without bias"])


# --------------------------------------------------------------------------
# 11. stateful (Keras 3 only; saved before running, checked chunk by chunk)
# --------------------------------------------------------------------------
def make_stateful():
    name = "stateful_k3"
    fresh(k3)
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
    path = out_path(f"{name}.keras")
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
    def build(K):
        return sequential(K, (None, 4), lambda L, inp: [
            L.GRU(7, return_sequences=True, reset_after=False, **inp),
            L.GRU(5),
            L.Dense(3),
        ])

    variants = {
        k3: ("Keras 3 save_weights('x.weights.h5')",
             ["Keras 3 weights-only h5 layout", "to_json config (Keras 3 style)"]),
        k2: ("Keras 2 save_weights('x.h5')",
             ["Keras 2 weights-only h5 layout (root layer_names, per-layer weight_names)",
              "to_json config (Keras 2 style)"]),
    }
    for K, (how, covers) in variants.items():
        fixture(K, named("weights", K), build, lambda rng: randn(rng, 3, 6, 4),
                f"{how} + model.to_json(): GRU(7, seq, reset_after=False)->GRU(5)->Dense(3)",
                covers + ["reset_after True and False"], save=save_weights_only)


# --------------------------------------------------------------------------
# 13/14. other activations, identity layers, functional with explicit Input
# --------------------------------------------------------------------------
def make_activations():
    def build_seq(K):
        return sequential(K, (None, 4), lambda L, inp: [
            L.GRU(6, activation="relu", recurrent_activation="sigmoid",
                  return_sequences=True, **inp),
            L.Dropout(0.3),
            L.GRU(5, activation="linear", return_sequences=True),
            L.SpatialDropout1D(0.2),
            L.TimeDistributed(L.Dense(6, activation="relu")),
            L.Dense(5, activation="tanh"),
            L.Dense(4, activation="elu"),
            L.Dense(4, activation="softmax"),
        ])

    fixture(k3, "act_seq_k3", build_seq, lambda rng: randn(rng, 3, 6, 4),
            "GRU(6, activation=relu, seq)->Dropout->GRU(5, activation=linear, seq)->"
            "SpatialDropout1D->TimeDistributed(Dense(6, relu))->Dense(5, tanh) on 3-D->"
            "Dense(4, elu)->Dense(4, softmax)",
            ["GRU activation relu / linear", "Dropout & SpatialDropout1D (identity)",
             "Dense applied to 3-D input (last axis)",
             "Dense activations relu, tanh, elu, softmax (over last axis of 3-D)"],
            scale=0.7)

    # The two functional models differ on purpose: each covers the activation
    # names and config style of its own Keras generation.
    def build_func_k3(K):
        L = K.layers
        inp = K.Input(shape=(None, 3), name="features")
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
        return K.Model(inp, out, name="act_func")

    def build_func_tf2(K):
        L = K.layers
        inp = K.Input(shape=(None, 3), name="features")
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
        return K.Model(inp, out, name="act_func")

    def func_input(rng):
        return randn(rng, 3, 5, 3, scale=1.5)

    fixture(k3, "act_func_k3", build_func_k3, func_input,
            "Functional with explicit Input: GRU(5, activation=sigmoid, seq)->GRU(6)->"
            "Dense(selu)->Dropout->Dense->Activation(softplus)->Dense(swish)->"
            "Dense(silu)->Dense(gelu)->Activation(elu)->Dense(linear)",
            ["functional Model with InputLayer (inbound_nodes / input_layers)",
             "GRU activation sigmoid", "selu, softplus, swish, silu, gelu, elu, linear",
             "Activation layer", "Dropout"],
            scale=0.8)
    fixture(k2, "act_func_tf2", build_func_tf2, func_input,
            "Keras 2 functional with explicit Input: GRU(5, relu, seq)->SpatialDropout1D->"
            "GRU(6, sigmoid)->Dense(selu)->Dropout->Dense(softplus)->Dense(swish)->"
            "Dense(gelu)->Activation(elu)->Dense(tanh)->Dense(softmax)",
            ["Keras 2 functional Model config (InputLayer, inbound_nodes lists)",
             "GRU activation relu / sigmoid", "Keras 2 activation names incl. gelu/swish",
             "SpatialDropout1D, Dropout, Activation"],
            scale=0.8)


# --------------------------------------------------------------------------
def main(argv=None) -> int:
    global ONLY, SEED_OPTIMIZER, OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma separated fixture names (manifest is merged)")
    ap.add_argument("--seed-without-optimizer", action="store_true",
                    help="save the two seed models without optimizer state "
                         "(~1.7 MB each instead of ~5.1 MB)")
    ap.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                    help="output directory (default: tests/fixtures/keras in the repo)")
    args = ap.parse_args(argv)
    SEED_OPTIMIZER = not args.seed_without_optimizer
    if args.only:
        ONLY = set(args.only.split(","))
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)

    # (fixture names in manifest order, the function that makes them)
    steps = [
        (("seed_tf2", "seed_k3"), make_seed),
        (("reset_before_tf2", "reset_before_k3"), make_reset_before),
        (("hard_sigmoid_tf2", "hard_sigmoid_k3"), make_hard_sigmoid),
        (("k3_legacy",), make_k3_legacy),
        (("k3_legacy_func",), make_k3_legacy_func),
        (("bidir_k3", "bidir_tf2", "bidir_modes_k3"), make_bidir),
        (("bidir_mask_k3", "bidir_mask_tf2"), make_bidir_mask),
        (("masking_k3", "masking_tf2"), make_masking),
        (("func_masking_k3", "func_masking_tf2", "func_masking_k3_legacy"), make_func_masking),
        (("bidir_legacy_paths_tf2", "bidir_legacy_paths_k3"), make_bidir_legacy_paths),
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
