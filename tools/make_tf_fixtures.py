#!/usr/bin/env python3
"""Generate TensorFlow-format Keras checkpoints used as test fixtures for gru_infer.

Writes into ``tests/fixtures/tf/`` (or ``--out DIR``): TF SavedModel folders,
TF-format checkpoints (``save_weights("ckpt")``, ``tf.train.Checkpoint``,
``ModelCheckpoint(save_weights_only=True)``), CuDNNGRU weights in the layout
Keras 2.2.4 wrote them, a ``.keras`` file and a ``.weights.h5`` as tf.keras
2.15 wrote them on Windows, and a weights-only ``.h5`` whose config has other
layer names.  Run it with a TensorFlow virtualenv, never with the project's
own interpreter (the package must not need TensorFlow):

    python3 -m venv /work/venvs/tf
    /work/venvs/tf/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py
    /work/venvs/tf/bin/python tools/make_tf_fixtures.py           # the tf_keras 2.21 fixtures

    python3 -m venv /work/venvs/tf215
    /work/venvs/tf215/bin/pip install tensorflow-cpu==2.15.1 h5py
    /work/venvs/tf215/bin/python tools/make_tf_fixtures.py        # the TF 2.15 fixtures

Each run writes the fixtures of the Keras it runs with and merges its entries
into manifest.json.  Every fixture NAME gets its files plus ``NAME.npz`` with
the model input ``x`` and the framework's output ``y``.  All weights (biases
too) are seeded random values; every file is reloaded by the framework and
must reproduce ``y`` (rtol = atol = 1e-5) before it is kept.

Usage: make_tf_fixtures.py [--only NAME[,NAME...]] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU math
os.environ.pop("TF_USE_LEGACY_KERAS", None)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # for the Keras 3 fixtures

import h5py
import numpy as np
import tensorflow as tf

try:  # TF >= 2.16: Keras 2 is the tf_keras package
    import tf_keras as K

    KERAS_VERSION = K.__version__
except ImportError:  # TF <= 2.15: tf.keras is the keras 2.x package
    import keras

    K = tf.keras
    KERAS_VERSION = keras.__version__
assert KERAS_VERSION.startswith("2."), KERAS_VERSION
WRITER = "tf215" if tf.__version__.startswith("2.15") else "tf2"

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "tf"
RTOL = ATOL = 1e-5
FIXTURES: list[dict] = []
ONLY: set[str] | None = None
L = K.layers


# --------------------------------------------------------------------------
# helpers (the habits of make_keras_fixtures.py)
# --------------------------------------------------------------------------
def rng_for(name: str) -> np.random.Generator:
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name)) % (2**31)
    return np.random.default_rng(seed)


def randomize(model, rng, scale: float = 0.5) -> None:
    model.set_weights([(rng.standard_normal(w.shape) * scale).astype(w.dtype)
                       for w in model.get_weights()])


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def tokens(rng, batch, steps, vocab):
    """Token ids with padding zeros at the end, in the middle and at the start."""
    x = rng.integers(1, vocab, size=(batch, steps)).astype(np.int32)
    x[0, -2:] = 0
    if batch > 1:
        x[1, 2] = 0
    if batch > 2:
        x[2, 0] = 0
    return x


def predict(model, x) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0))


def check_close(name: str, got, want) -> None:
    assert got.shape == want.shape, (name, got.shape, want.shape)
    if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        raise AssertionError(f"{name}: reload mismatch, max abs diff "
                             f"{np.max(np.abs(got - want))}")


def wanted(name: str) -> bool:
    return ONLY is None or name in ONLY


def fresh() -> None:
    """Reset layer-name counters so layer names (gru, gru_1, ...) are stable."""
    K.backend.clear_session()
    tf.random.set_seed(1234)
    np.random.seed(1234)


def clean(*names) -> None:
    for name in names:
        path = OUT / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_config(model, name: str) -> str:
    """model.to_json() as NAME.json; returns the JSON text."""
    text = model.to_json()
    (OUT / f"{name}.json").write_text(json.dumps(json.loads(text), indent=1) + "\n")
    return text


def record(name, files, fmt, description, covers, x, y, **extra):
    """Write NAME.npz and append a manifest entry."""
    np.savez(OUT / f"{name}.npz", x=x, y=y.astype(np.float32))
    entry = {
        "name": name,
        "files": list(files) + [f"{name}.npz"],
        "writer": extra.pop("writer", f"{'tensorflow' if WRITER == 'tf215' else 'tf_keras'} "
                                      f"{KERAS_VERSION}"),
        "keras_version": extra.pop("keras_version", KERAS_VERSION),
        "format": fmt,
        "description": description,
        "covers": covers,
        "input": {"shape": list(x.shape), "dtype": str(x.dtype)},
        "output": list(y.shape),
    }
    entry.update(extra)
    FIXTURES.append(entry)
    size = 0
    for f in entry["files"]:
        p = OUT / f
        size += sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() \
            else p.stat().st_size
    entry["bytes"] = size
    print(f"  wrote {name}: {entry['files']} ({size / 1024:.1f} KiB)")


def train_one_step(model, x, y, loss="mse"):
    model.compile(optimizer="adam", loss=loss)
    model.train_on_batch(x, y)


F_SAVEDMODEL = "TF SavedModel folder (model.save(dir), keras_metadata.pb + variables/)"
F_CKPT = "TF checkpoint (.index + .data shard, object graph) + to_json() config"
F_K2_W = "Keras 2 weights-only .h5 (layer_names / weight_names) + to_json() config"
F_K2_H5 = "Keras 2 full-model .h5 (model_config + model_weights)"
F_WIN = "Keras 2.15 .keras / .weights.h5 written on Windows (backslash group names)"


# --------------------------------------------------------------------------
# SavedModel folders
# --------------------------------------------------------------------------
def save_savedmodel(model, name, x, y):
    """model.save(dir).  save_traces=False keeps saved_model.pb at ~20 KB
    instead of ~750 KB of traced functions that gru_infer does not read
    (the realworld corpus has a default save); variables/, keras_metadata.pb
    and the object graph are the same."""
    clean(name)
    model.save(str(OUT / name), save_traces=False)
    shutil.rmtree(OUT / name / "assets", ignore_errors=True)  # empty; git keeps no empty dirs
    again = K.models.load_model(str(OUT / name), compile=False)
    check_close(name, predict(again, x), y)


def make_sm_seq():
    name = f"sm_seq_{WRITER}"
    if not wanted(name):
        return
    fresh()
    model = K.Sequential([
        L.GRU(8, return_sequences=True, input_shape=(None, 4)),
        L.GRU(6, reset_after=False),
        L.Dense(3, activation="softmax"),
    ])
    rng = rng_for(name)
    randomize(model, rng)
    train_one_step(model, randn(rng, 2, 5, 4), randn(rng, 2, 3))
    x = randn(rng, 3, 7, 4)
    y = predict(model, x)
    save_savedmodel(model, name, x, y)
    record(name, [name], F_SAVEDMODEL,
           "Sequential GRU(8, seq)->GRU(6, reset_after=False)->Dense(3, softmax), adam-trained "
           "one step, model.save(dir)",
           ["SavedModel Sequential", "GRU reset_after True and False", "Dense softmax",
            "optimizer slots and metrics in the bundle"], x, y)


def make_sm_func():
    name = f"sm_func_{WRITER}"
    if not wanted(name):
        return
    fresh()
    inp = K.Input(shape=(None,), dtype="int32", name="tokens")
    h = L.Embedding(20, 6, mask_zero=True, name="emb")(inp)
    h = L.Bidirectional(L.GRU(5, return_sequences=True), name="bi_seq")(h)
    h = L.TimeDistributed(L.Dense(4, activation="tanh"), name="td")(h)
    h = L.Bidirectional(L.GRU(3, reset_after=False), merge_mode="sum", name="bi_last")(h)
    out = L.Dense(2, activation="sigmoid", name="head")(h)
    model = K.Model(inp, out, name="func")
    rng = rng_for(name)
    randomize(model, rng)
    x = tokens(rng, 3, 7, 20)
    y = predict(model, x)
    save_savedmodel(model, name, x, y)
    record(name, [name], F_SAVEDMODEL,
           "functional Input(int)->Embedding(20, 6, mask_zero)->Bidirectional(GRU(5, seq))->"
           "TimeDistributed(Dense(4, tanh))->Bidirectional(GRU(3, reset_after=False), sum)->"
           "Dense(2, sigmoid), model.save(dir)",
           ["SavedModel functional (InputLayer counted in layer-N)", "Embedding mask_zero",
            "Bidirectional forward_layer/backward_layer/cell", "TimeDistributed layer",
            "merge_mode sum", "masked steps at end, middle and start"], x, y)


def make_sm_bidir():
    name = f"sm_bidir_{WRITER}"
    if not wanted(name):
        return
    fresh()
    model = K.Sequential([
        L.Bidirectional(L.GRU(6, return_sequences=True), input_shape=(None, 3)),
        L.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid"),
        L.Dense(2),
    ])
    rng = rng_for(name)
    randomize(model, rng, scale=0.8)
    x = randn(rng, 2, 6, 3, scale=2.0)
    y = predict(model, x)
    save_savedmodel(model, name, x, y)
    record(name, [name], F_SAVEDMODEL,
           "Sequential Bidirectional(GRU(6, seq))->GRU(4, reset_after=False, hard_sigmoid)->"
           "Dense(2), model.save(dir)",
           ["SavedModel by TensorFlow 2.15's own Keras", "Bidirectional",
            "hard_sigmoid (Keras 2 definition)"], x, y)


# --------------------------------------------------------------------------
# TF-format checkpoints
# --------------------------------------------------------------------------
def make_ckpt_weights():
    """model.save_weights("dir/ckpt"): TF format when the name has no .h5."""
    name = f"ckpt_weights_{WRITER}"
    if not wanted(name):
        return
    fresh()
    model = K.Sequential([
        L.Masking(mask_value=0.0, input_shape=(None, 3)),
        L.Bidirectional(L.GRU(6, return_sequences=True, reset_after=False)),
        L.Dropout(0.3),
        L.GRU(4),
        L.Dense(2),
    ])
    rng = rng_for(name)
    randomize(model, rng)
    x = randn(rng, 3, 6, 3)
    x[0, -2:] = 0.0
    x[1, 2] = 0.0
    y = predict(model, x)
    clean(name, f"{name}.json")
    (OUT / name).mkdir()
    model.save_weights(str(OUT / name / "ckpt"))
    text = write_config(model, name)
    again = K.models.model_from_json(text)
    again.load_weights(str(OUT / name / "ckpt")).assert_existing_objects_matched()
    check_close(name, predict(again, x), y)
    record(name, [name, f"{name}.json"], F_CKPT,
           "model.save_weights('ckpt') (TF format) + to_json(): Masking->Bidirectional(GRU(6, "
           "seq, reset_after=False))->Dropout->GRU(4)->Dense(2)",
           ["save_weights TF format: layer_with_weights-N / layer-N at the root",
            "'checkpoint' state file in the folder", "weightless layers between",
            "Masking"], x, y)


def make_ckpt_object():
    """tf.train.Checkpoint(model=..., optimizer=...).save(prefix)."""
    name = f"ckpt_object_{WRITER}"
    if not wanted(name):
        return
    fresh()
    inp = K.Input(shape=(None, 4))
    h = L.GRU(5, return_sequences=True)(inp)
    h = L.GRU(4, reset_after=False)(h)
    out = L.Dense(3, activation="tanh")(h)
    model = K.Model(inp, out)
    rng = rng_for(name)
    randomize(model, rng)
    optimizer = K.optimizers.Adam()
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(randn(rng, 2, 5, 4), randn(rng, 2, 3))
    x = randn(rng, 2, 6, 4)
    y = predict(model, x)
    clean(name, f"{name}.json")
    prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(OUT / name / "ckpt"))
    text = write_config(model, name)
    again = K.models.model_from_json(text)
    tf.train.Checkpoint(model=again).restore(prefix).expect_partial() \
        .assert_existing_objects_matched()
    check_close(name, predict(again, x), y)
    record(name, [name, f"{name}.json"], F_CKPT,
           "tf.train.Checkpoint(model=, optimizer=).save() + to_json(): functional "
           "GRU(5, seq)->GRU(4, reset_after=False)->Dense(3, tanh), adam-trained one step",
           ["model under the checkpoint's 'model' child", "save_counter, optimizer slots",
            "ckpt-1 prefix named by the 'checkpoint' state file"], x, y,
           prefix=os.path.relpath(prefix, OUT))


def make_textgen():
    """The TensorFlow text-generation tutorial (TF 2.0-2.3 edition), small:
    Embedding -> GRU(stateful, seq) -> Dense(vocab) trained with
    ModelCheckpoint(save_weights_only=True), rebuilt at batch 1 and restored
    with load_weights(tf.train.latest_checkpoint(dir))."""
    name = f"textgen_{WRITER}"
    if not wanted(name):
        return
    vocab, dim, units = 30, 8, 16

    def build(batch):
        return K.Sequential([
            L.Embedding(vocab, dim, batch_input_shape=[batch, None]),
            L.GRU(units, return_sequences=True, stateful=True,
                  recurrent_initializer="glorot_uniform"),
            L.Dense(vocab),
        ])

    fresh()
    model = build(2)
    rng = rng_for(name)
    randomize(model, rng)
    model.compile(optimizer="adam",
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    clean(name, f"{name}.json")
    data = rng.integers(0, vocab, size=(4, 9))
    callback = K.callbacks.ModelCheckpoint(filepath=str(OUT / name / "ckpt_{epoch}"),
                                           save_weights_only=True)
    model.fit(data[:, :-1], data[:, 1:], batch_size=2, epochs=1, callbacks=[callback],
              verbose=0, shuffle=False)
    fresh()
    rebuilt = build(1)
    rebuilt.load_weights(tf.train.latest_checkpoint(str(OUT / name)))
    rebuilt.build(tf.TensorShape([1, None]))
    write_config(rebuilt, name)
    x = rng.integers(1, vocab, size=(1, 7)).astype(np.int32)
    rebuilt.reset_states()
    y = predict(rebuilt, x)
    model.reset_states()  # the trained model at batch 2 gives the same row
    check_close(name, predict(model, np.repeat(x, 2, axis=0))[:1], y)
    record(name, [name, f"{name}.json"], F_CKPT,
           "TF text-generation tutorial shape: Embedding(30, 8)->GRU(16, seq, stateful)->"
           "Dense(30) logits; fit one epoch with ModelCheckpoint(save_weights_only=True), "
           "config from the batch-1 rebuild",
           ["ModelCheckpoint ckpt_{epoch} files + 'checkpoint' state file",
            "Adam slots in the object graph", "stateful GRU, batch_input_shape"], x, y)


def make_textgen_subclassed():
    """The current tutorial's subclassed model (attributes embedding, gru,
    dense): its checkpoint names objects by attribute; the config is a
    Sequential whose layer names are those attribute names."""
    name = f"textgen_subclassed_{WRITER}"
    if not wanted(name):
        return
    vocab, dim, units = 25, 6, 12

    class MyModel(K.Model):
        def __init__(self):
            super().__init__()
            self.embedding = L.Embedding(vocab, dim)
            self.gru = L.GRU(units, return_sequences=True, return_state=True)
            self.dense = L.Dense(vocab)

        def call(self, inputs, training=False):
            h = self.embedding(inputs, training=training)
            h, _ = self.gru(h, training=training)
            return self.dense(h, training=training)

    fresh()
    model = MyModel()
    rng = rng_for(name)
    model(np.zeros((1, 3), np.int32))
    randomize(model, rng)
    model.compile(optimizer="adam",
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    clean(name, f"{name}.json")
    data = rng.integers(0, vocab, size=(4, 9))
    callback = K.callbacks.ModelCheckpoint(filepath=str(OUT / name / "ckpt_{epoch}"),
                                           save_weights_only=True)
    model.fit(data[:, :-1], data[:, 1:], batch_size=2, epochs=1, callbacks=[callback],
              verbose=0, shuffle=False)
    x = rng.integers(1, vocab, size=(2, 7)).astype(np.int32)
    y = predict(model, x)
    again = MyModel()
    again.load_weights(tf.train.latest_checkpoint(str(OUT / name)))
    check_close(name, predict(again, x), y)
    twin = K.Sequential([L.Embedding(vocab, dim, name="embedding", input_shape=(None,)),
                         L.GRU(units, return_sequences=True, name="gru"),
                         L.Dense(vocab, name="dense")])
    twin.set_weights(model.get_weights())
    check_close(name + " (Sequential twin)", predict(twin, x), y)
    write_config(twin, name)
    record(name, [name, f"{name}.json"], F_CKPT,
           "subclassed tutorial model (embedding, gru with return_state, dense attributes) "
           "saved by ModelCheckpoint(save_weights_only=True); config: a Sequential twin with "
           "the attribute names as layer names",
           ["object graph children named by attribute, not layer_with_weights-N",
            "config layers matched by name"], x, y)


def make_ckpt_k3():
    """Keras 3 (TensorFlow backend) models under tf.train.Checkpoint: layers
    tracked as _operations, Dense's kernel as _kernel."""
    names = ("ckpt_k3_seq_tf2", "ckpt_k3_func_tf2")
    if WRITER != "tf2" or not any(wanted(n) for n in names):
        return
    import keras as k3

    def sequential():
        return k3.Sequential([
            k3.Input((None, 3)),
            k3.layers.GRU(6, recurrent_activation="hard_sigmoid", return_sequences=True),
            k3.layers.Bidirectional(k3.layers.GRU(4, reset_after=False)),
            k3.layers.Dense(3, activation="softmax"),
        ])

    def functional():
        inp = k3.Input((None,), dtype="int32")
        h = k3.layers.Embedding(15, 5, mask_zero=True)(inp)
        h = k3.layers.GRU(6, return_sequences=True)(h)
        h = k3.layers.TimeDistributed(k3.layers.Dense(2, activation="tanh"))(h)
        return k3.Model(inp, h)

    for name, build, make_x in ((names[0], sequential, lambda rng: randn(rng, 2, 6, 3, scale=2.0)),
                                (names[1], functional, lambda rng: tokens(rng, 3, 6, 15))):
        if not wanted(name):
            continue
        k3.backend.clear_session()
        k3.utils.set_random_seed(1234)
        model = build()
        rng = rng_for(name)
        model.set_weights([(rng.standard_normal(w.shape) * 0.8).astype(w.dtype)
                           for w in model.get_weights()])
        x = make_x(rng)
        y = np.asarray(model.predict(x, verbose=0))
        clean(name, f"{name}.json")
        prefix = tf.train.Checkpoint(model=model).save(str(OUT / name / "ckpt"))
        text = model.to_json()
        (OUT / f"{name}.json").write_text(json.dumps(json.loads(text), indent=1) + "\n")
        again = k3.models.model_from_json(text)
        tf.train.Checkpoint(model=again).restore(prefix).assert_existing_objects_matched()
        check_close(name, np.asarray(again.predict(x, verbose=0)), y)
        record(name, [name, f"{name}.json"], F_CKPT,
               f"Keras 3 {type(model).__name__} under tf.train.Checkpoint(model=) + to_json()",
               ["Keras 3 object graph: _operations (InputLayer included), _kernel",
                "Keras version from the config's style (hard_sigmoid = Keras 3's)"]
               if build is sequential else
               ["Keras 3 functional _operations", "Embedding mask_zero", "TimeDistributed"],
               x, y, writer=f"keras {k3.__version__} (TensorFlow {tf.__version__})",
               keras_version=k3.__version__)


# --------------------------------------------------------------------------
# Keras 2 .h5: names that do not match, CuDNNGRU
# --------------------------------------------------------------------------
def make_order():
    """save_weights('x.h5'), config of the same architecture built again in
    the same session: fresh auto-names (gru_2, ...), matched by order."""
    name = f"order_{WRITER}"
    if not wanted(name):
        return

    def build():
        return K.Sequential([
            L.GRU(7, return_sequences=True, input_shape=(None, 4)),
            L.Dropout(0.1),
            L.GRU(5, reset_after=False),
            L.Dense(3),
        ])

    fresh()
    model = build()
    rng = rng_for(name)
    randomize(model, rng)
    x = randn(rng, 3, 6, 4)
    y = predict(model, x)
    clean(f"{name}.h5", f"{name}.json")
    model.save_weights(str(OUT / f"{name}.h5"))
    other = build()
    assert [layer.name for layer in other.layers] != [layer.name for layer in model.layers]
    text = write_config(other, name)
    again = K.models.model_from_json(text)
    again.load_weights(str(OUT / f"{name}.h5"))
    check_close(name, predict(again, x), y)
    record(name, [f"{name}.h5", f"{name}.json"], F_K2_W,
           "save_weights('x.h5') of GRU(7, seq)->Dropout->GRU(5, reset_after=False)->Dense(3); "
           "the config is the same architecture built again: other layer names",
           ["weights-only .h5 paired with the config by order (Keras load_weights)",
            "weightless layer in between"], x, y)


def _cudnn_layer_config(units, return_sequences, name):
    """CuDNNGRU.get_config() as Keras 2.2.4 wrote it."""
    init = {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg",
                                                         "distribution": "uniform", "seed": None}}
    return {"class_name": "CuDNNGRU", "config": {
        "name": name, "trainable": True, "return_sequences": return_sequences,
        "return_state": False, "go_backwards": False, "stateful": False, "units": units,
        "kernel_initializer": init,
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0,
                                                                          "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None}}


def _cudnn_config(layers, model_name):
    """A Keras 2.2.4 Sequential to_json() whose GRU layers are CuDNNGRU."""
    return {"class_name": "Sequential", "config": {"name": model_name, "layers": layers},
            "keras_version": "2.2.4", "backend": "tensorflow"}


def _write_k224_weights(group, layers):
    """Keras 2.2.4's save_weights layout: layer_names on the group, weight_names
    on each layer group, datasets at layer/<weight name> (nested by '/')."""
    group.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
    for layer_name, weights in layers:
        g = group.create_group(layer_name)
        g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
        for weight_name, value in weights:
            g.create_dataset(weight_name, data=value)


def _cudnn_weights(rng, input_size, units, dtype, scale=0.5):
    """Random CuDNNGRU weights in its file shapes: kernel (I, 3u), recurrent
    (u, 3u), bias (6u,) = [input bias | recurrent bias]."""
    return [(rng.standard_normal(s) * scale).astype(dtype)
            for s in ((input_size, 3 * units), (units, 3 * units), (6 * units,))]


def make_cudnn_bidir():
    """Like DeepZip's biGRU.hdf5: Keras 2.2.4 save_weights of
    Embedding->Bidirectional(CuDNNGRU)->CuDNNGRU->Dense, config from code
    (other names).  Expected outputs: the CPU twin (GRU reset_after=True,
    sigmoid) after Keras' own load_weights, which converts cuDNN weights."""
    name = f"cudnn_bidir_{WRITER}"
    if not wanted(name):
        return
    vocab, dim, u1, u2, classes = 12, 5, 6, 4, 3
    rng = rng_for(name)
    emb = randn(rng, vocab, dim, scale=0.5)
    fwd = _cudnn_weights(rng, dim, u1, np.float32)
    bwd = _cudnn_weights(rng, dim, u1, np.float32)
    second = _cudnn_weights(rng, 2 * u1, u2, np.float32)
    kernel, bias = randn(rng, u2, classes, scale=0.5), randn(rng, classes, scale=0.5)
    gru_names = ("kernel:0", "recurrent_kernel:0", "bias:0")
    layers = [
        ("embedding_1", [("embedding_1/embeddings:0", emb)]),
        ("bidirectional_1",
         [(f"bidirectional_1/forward_cu_dnngru_1/{n}", w) for n, w in zip(gru_names, fwd)]
         + [(f"bidirectional_1/backward_cu_dnngru_1/{n}", w) for n, w in zip(gru_names, bwd)]),
        ("cu_dnngru_2", [(f"cu_dnngru_2/{n}", w) for n, w in zip(gru_names, second)]),
        ("dense_1", [("dense_1/kernel:0", kernel), ("dense_1/bias:0", bias)]),
    ]
    clean(f"{name}.h5", f"{name}.json")
    with h5py.File(OUT / f"{name}.h5", "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        _write_k224_weights(f, layers)
    # the config as a user rebuilds it from code: fresh tf.keras names
    config = _cudnn_config([
        {"class_name": "Embedding", "config": {
            "name": "embedding", "trainable": True, "batch_input_shape": [None, None],
            "dtype": "float32", "input_dim": vocab, "output_dim": dim,
            "embeddings_initializer": {"class_name": "RandomUniform", "config": {
                "minval": -0.05, "maxval": 0.05, "seed": None}},
            "embeddings_regularizer": None, "activity_regularizer": None,
            "embeddings_constraint": None, "mask_zero": False, "input_length": None}},
        {"class_name": "Bidirectional", "config": {
            "name": "bidirectional", "trainable": True,
            "layer": _cudnn_layer_config(u1, True, "cu_dnngru"), "merge_mode": "concat"}},
        _cudnn_layer_config(u2, False, "cu_dnngru_1"),
        {"class_name": "Dense", "config": {
            "name": "dense", "trainable": True, "units": classes, "activation": "softmax",
            "use_bias": True, "kernel_initializer": {"class_name": "VarianceScaling",
                                                     "config": {}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}},
    ], "sequential")
    (OUT / f"{name}.json").write_text(json.dumps(config, indent=1) + "\n")
    fresh()
    twin = K.Sequential([
        L.Embedding(vocab, dim, input_shape=(None,)),
        L.Bidirectional(L.GRU(u1, return_sequences=True, reset_after=True,
                              recurrent_activation="sigmoid")),
        L.GRU(u2, reset_after=True, recurrent_activation="sigmoid"),
        L.Dense(classes, activation="softmax"),
    ])
    twin.load_weights(str(OUT / f"{name}.h5"))  # Keras converts the cuDNN layout here
    assert not np.allclose(twin.layers[2].get_weights()[0], second[0])
    x = rng.integers(0, vocab, size=(3, 8)).astype(np.int32)
    y = predict(twin, x)
    record(name, [f"{name}.h5", f"{name}.json"], F_K2_W,
           "Keras 2.2.4 save_weights layout of Embedding(12, 5)->Bidirectional(CuDNNGRU(6, "
           "seq))->CuDNNGRU(4)->Dense(3, softmax), float32; config with CuDNNGRU classes and "
           "tf.keras auto-names (embedding, bidirectional, ...)",
           [("CuDNNGRU kernel per-gate Fortran-order blocks, transposed recurrent blocks, "
             "(6u,) bias"), "Bidirectional(CuDNNGRU) forward_cu_dnngru_1 / backward_...",
            "layer names differ: matched by order"], x, y,
           writer=f"hand-written in Keras 2.2.4's layout (tools/make_tf_fixtures.py); "
                  f"outputs: tf_keras {KERAS_VERSION} CPU twin after load_weights",
           keras_version="2.2.4")


def make_cudnn_f16():
    """A Keras 2.2.4 full-model .h5 (model_config + model_weights) of
    CuDNNGRU->Bidirectional(CuDNNGRU)->Dense with float16 weights (floatx
    float16); outputs from the float32 CPU twin with the same weights."""
    name = f"cudnn_f16_{WRITER}"
    if not wanted(name):
        return
    features, u1, u2, out = 3, 6, 4, 2
    rng = rng_for(name)
    first = _cudnn_weights(rng, features, u1, np.float16)
    fwd = _cudnn_weights(rng, u1, u2, np.float16)
    bwd = _cudnn_weights(rng, u1, u2, np.float16)
    kernel = (rng.standard_normal((2 * u2, out)) * 0.5).astype(np.float16)
    bias = (rng.standard_normal(out) * 0.5).astype(np.float16)
    gru_names = ("kernel:0", "recurrent_kernel:0", "bias:0")
    layers = [
        ("cu_dnngru_1", [(f"cu_dnngru_1/{n}", w) for n, w in zip(gru_names, first)]),
        ("bidirectional_1",
         [(f"bidirectional_1/forward_cu_dnngru_2/{n}", w) for n, w in zip(gru_names, fwd)]
         + [(f"bidirectional_1/backward_cu_dnngru_2/{n}", w) for n, w in zip(gru_names, bwd)]),
        ("dense_1", [("dense_1/kernel:0", kernel), ("dense_1/bias:0", bias)]),
    ]
    first_config = _cudnn_layer_config(u1, True, "cu_dnngru_1")
    first_config["config"].update(batch_input_shape=[None, None, features], dtype="float16")
    config = _cudnn_config([
        first_config,
        {"class_name": "Bidirectional", "config": {
            "name": "bidirectional_1", "trainable": True,
            "layer": _cudnn_layer_config(u2, False, "cu_dnngru_2"), "merge_mode": "concat"}},
        {"class_name": "Dense", "config": {
            "name": "dense_1", "trainable": True, "units": out, "activation": "linear",
            "use_bias": True, "kernel_initializer": {"class_name": "VarianceScaling",
                                                     "config": {}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}},
    ], "sequential_1")
    clean(f"{name}.h5")
    with h5py.File(OUT / f"{name}.h5", "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(
            {k: v for k, v in config.items() if k in ("class_name", "config")}).encode()
        weights = f.create_group("model_weights")
        weights.attrs["keras_version"] = b"2.2.4"
        weights.attrs["backend"] = b"tensorflow"
        _write_k224_weights(weights, layers)
    fresh()
    twin = K.Sequential([
        L.GRU(u1, return_sequences=True, input_shape=(None, features)),
        L.Bidirectional(L.GRU(u2)),
        L.Dense(out),
    ])
    twin.load_weights(str(OUT / f"{name}.h5"))
    x = randn(rng, 2, 6, features)
    y = predict(twin, x)
    record(name, [f"{name}.h5"], F_K2_H5,
           "Keras 2.2.4 full-model .h5 layout of CuDNNGRU(6, seq)->Bidirectional(CuDNNGRU(4))->"
           "Dense(2), every weight float16",
           ["CuDNNGRU in model_config", "float16 weights (computed in float32)",
            "Bidirectional(CuDNNGRU) in a full model"], x, y,
           writer=f"hand-written in Keras 2.2.4's layout (tools/make_tf_fixtures.py); "
                  f"outputs: tf_keras {KERAS_VERSION} float32 CPU twin after load_weights",
           keras_version="2.2.4")


# --------------------------------------------------------------------------
# Windows-written .keras / .weights.h5 (tf.keras 2.13-2.15)
# --------------------------------------------------------------------------
def _to_windows_paths(h5_bytes_path: Path):
    """Rewrite an HDF5 weights file the way tf.keras 2.15 wrote it on Windows:
    its saving code joined paths with os.path.join, so every group that holds
    'vars' sits at the root under a name with backslashes
    ('layers\\gru\\cell'), and the intermediate groups are not there."""
    with h5py.File(h5_bytes_path, "r") as src:
        holders = []
        src.visititems(lambda n, o: holders.append(n) if isinstance(o, h5py.Group)
                       and "vars" in o else None)
        holders = ([""] if "vars" in src else []) + holders
        tmp = h5_bytes_path.with_suffix(".win")
        with h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for holder in holders:
                target = dst.create_group(holder.replace("/", "\\")) if holder else dst
                source = src[holder] if holder else src
                for key, value in source.attrs.items():
                    target.attrs[key] = value
                src.copy(source["vars"], target, name="vars")
    tmp.replace(h5_bytes_path)


def _windows_read_back(h5_path, model):
    """The realworld ground-truth method: the weights of each layer from its
    backslash-named group, set on the model from config."""
    values = []
    with h5py.File(h5_path, "r") as f:
        counts = {}
        for layer in model.layers:  # keras' to_snake_case of the class name
            cls = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", layer.__class__.__name__)
            cls = re.sub("([a-z])([A-Z])", r"\1_\2", cls).lower()
            n = counts.get(cls, 0)
            counts[cls] = n + 1
            key = f"layers\\{cls if n == 0 else f'{cls}_{n}'}"
            for sub in (key + "\\cell", key):
                if sub in f and len(f[sub]["vars"]):
                    values += [f[sub]["vars"][str(i)][()] for i in range(len(f[sub]["vars"]))]
                    break
    model.set_weights(values)


def make_windows():
    """model.save('x.keras') and save_weights('x.weights.h5') by tf.keras
    2.15, rewritten with Windows paths."""
    names = [f"windows_{WRITER}", f"windows_weights_{WRITER}"]
    if not any(wanted(n) for n in names):
        return
    fresh()
    model = K.Sequential([
        L.GRU(8, return_sequences=True, activation="relu", input_shape=(9, 1)),
        L.GRU(5, return_sequences=True, activation="relu"),
        L.Dense(1),
    ])
    rng = rng_for(names[0])
    randomize(model, rng)
    train_one_step(model, randn(rng, 2, 9, 1), randn(rng, 2, 9, 1))
    x = randn(rng, 3, 9, 1)
    y = predict(model, x)
    if wanted(names[0]):
        name = names[0]
        clean(f"{name}.keras")
        path = OUT / f"{name}.keras"
        model.save(str(path))
        check_close(name + " (before the rewrite)",
                    predict(K.models.load_model(str(path), compile=False), x), y)
        work = OUT / f"{name}.tmp"
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        (work.with_suffix(".h5")).write_bytes(members["model.weights.h5"])
        _to_windows_paths(work.with_suffix(".h5"))
        members["model.weights.h5"] = work.with_suffix(".h5").read_bytes()
        work.with_suffix(".h5").unlink()
        with zipfile.ZipFile(path, "w") as z:  # same member order and compression
            for member, data in members.items():
                z.writestr(member, data)
        again = K.models.model_from_json(json.dumps(json.loads(members["config.json"])))
        weights_h5 = OUT / f"{name}.check.h5"
        weights_h5.write_bytes(members["model.weights.h5"])
        _windows_read_back(weights_h5, again)
        weights_h5.unlink()
        check_close(name, predict(again, x), y)
        record(name, [f"{name}.keras"], F_WIN,
               "model.save('x.keras') of GRU(8, seq, relu)->GRU(5, seq, relu)->Dense(1), "
               "adam-trained one step (optimizer and metric vars), weights groups renamed as "
               "on Windows: 'layers\\\\gru\\\\cell/vars'",
               ["backslash group names in model.weights.h5", "GRU activation relu",
                "optimizer / metrics groups alongside"], x, y)
    if wanted(names[1]):
        name = names[1]
        clean(f"{name}.weights.h5", f"{name}.json")
        path = OUT / f"{name}.weights.h5"
        model.save_weights(str(path))
        text = write_config(model, name)
        again = K.models.model_from_json(text)
        again.load_weights(str(path))
        check_close(name + " (before the rewrite)", predict(again, x), y)
        _to_windows_paths(path)
        again = K.models.model_from_json(text)
        _windows_read_back(path, again)
        check_close(name, predict(again, x), y)
        record(name, [f"{name}.weights.h5", f"{name}.json"], F_WIN,
               "save_weights('x.weights.h5') of the same model, groups renamed as on Windows",
               ["backslash group names in a weights-only .weights.h5 + to_json()"], x, y)


# --------------------------------------------------------------------------
STEPS = [
    (("sm_seq_tf2", "sm_func_tf2"), (make_sm_seq, make_sm_func)),
    (("sm_bidir_tf215",), (make_sm_bidir,)),
    (("ckpt_weights_tf2", "ckpt_object_tf2", "textgen_tf2", "textgen_subclassed_tf2",
      "ckpt_k3_seq_tf2", "ckpt_k3_func_tf2"),
     (make_ckpt_weights, make_ckpt_object, make_textgen, make_textgen_subclassed,
      make_ckpt_k3)),
    (("order_tf2", "cudnn_bidir_tf2", "cudnn_f16_tf2"),
     (make_order, make_cudnn_bidir, make_cudnn_f16)),
    (("windows_tf215", "windows_weights_tf215"), (make_windows,)),
]


def main(argv=None) -> int:
    global ONLY, OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma separated fixture names (manifest is merged)")
    ap.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                    help="output directory (default: tests/fixtures/tf in the repo)")
    args = ap.parse_args(argv)
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    order = [n for names, _ in STEPS for n in names]
    mine = {n for n in order if n.endswith("_" + WRITER)}
    ONLY = mine & set(args.only.split(",")) if args.only else mine
    for names, makers in STEPS:
        if any(wanted(n) for n in names):
            for make in makers:
                print(f"[{make.__name__}]")
                make()

    manifest_path = OUT / "manifest.json"
    entries, versions = FIXTURES, {}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        done = {e["name"] for e in FIXTURES}
        entries = [e for e in old["fixtures"] if e["name"] not in done] + FIXTURES
        versions = old.get("versions", {})
    entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else 999)
    versions[WRITER] = {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": KERAS_VERSION, "numpy": np.__version__,
                        "h5py": h5py.__version__}
    manifest = {
        "generator": "tools/make_tf_fixtures.py",
        "versions": versions,
        "npz_keys": "x = model input, y = the framework's output",
        "reload_check": f"each file reloaded by the framework, allclose rtol={RTOL} atol={ATOL}",
        "fixtures": entries,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"manifest: {len(entries)} fixtures, directory total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
