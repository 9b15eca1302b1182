#!/usr/bin/env python3
"""Train the example model bundled with gru_infer: waveform recognition.

The task: 64 samples of a noisy periodic signal (sine, square, triangle or
sawtooth; random frequency, phase, amplitude, offset; Gaussian noise), one
sample per step; the model says which waveform it is.  The data generator is
gru_infer.demo.make_waveforms, so the demo draws from the same distribution.

    Input (None, 1) -> GRU(32, return_sequences=True) -> GRU(32) -> Dense(4, softmax)

Two stages, because TensorFlow and gru_infer live in different interpreters:

  --train DIR    (TensorFlow + Keras 3 python) generate data, train with fixed
                 seeds, save DIR/waveforms.keras, the validation batch and
                 Keras's own outputs on it (DIR/validation.npz, DIR/train.json);
  --export DIR   (python with gru_infer) convert DIR/waveforms.keras with
                 gru_infer.convert, check gru_infer's outputs against Keras's
                 (max abs diff <= 1e-5), write gru_infer/data/waveforms.safetensors
                 and gru_infer/data/waveforms.json.

Without a stage it runs both, each with its interpreter, in a temporary folder:

    python3 tools/train_example_model.py [--tf-python /work/venvs/tf/bin/python]

The train stage loads gru_infer/demo.py by file path (it imports only NumPy),
so the TensorFlow environment does not need gru_infer's C core.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_PATH = REPO / "gru_infer" / "demo.py"
DATA_DIR = REPO / "gru_infer" / "data"

TRAIN_COUNT, TRAIN_SEED = 20_000, 1
VAL_COUNT, VAL_SEED = 4_000, 2
INIT_SEED = 0
EPOCHS = 10
BATCH = 128
LEARNING_RATE = 5e-3
UNITS = 32
TOLERANCE = 1e-5  # max abs diff, gru_infer vs Keras, on the validation batch
DEFAULT_TF_PYTHON = "/work/venvs/tf/bin/python"


def load_demo_module():
    """gru_infer/demo.py as a standalone module (no gru_infer package import)."""
    spec = importlib.util.spec_from_file_location("_gru_infer_demo_standalone", DEMO_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- stage 1: train (TensorFlow) -------------------------------------------------------


def train(workdir: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    import keras
    import tensorflow as tf

    demo = load_demo_module()
    keras.utils.set_random_seed(INIT_SEED)
    tf.config.experimental.enable_op_determinism()

    x_train, y_train = demo.make_waveforms(TRAIN_COUNT, TRAIN_SEED)
    x_val, y_val = demo.make_waveforms(VAL_COUNT, VAL_SEED)
    print(f"data: train {x_train.shape}, validation {x_val.shape}, "
          f"labels {list(demo.WAVEFORMS)}", flush=True)

    model = keras.Sequential([
        keras.Input(shape=(None, 1), name="signal"),
        keras.layers.GRU(UNITS, return_sequences=True, name="gru_1"),
        keras.layers.GRU(UNITS, name="gru_2"),
        keras.layers.Dense(len(demo.WAVEFORMS), activation="softmax", name="waveform"),
    ], name="waveforms")
    schedule = keras.optimizers.schedules.CosineDecay(
        LEARNING_RATE, decay_steps=EPOCHS * (TRAIN_COUNT // BATCH), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    start = time.time()
    history = model.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS,
                        validation_data=(x_val, y_val), shuffle=True, verbose=2)
    seconds = time.time() - start

    probs = model.predict(x_val, batch_size=512, verbose=0)
    accuracy = float(np.mean(probs.argmax(axis=1) == y_val))
    print(f"keras validation accuracy: {accuracy:.4f} ({seconds:.0f} s of training)")

    path = workdir / "waveforms.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    drift = float(np.max(np.abs(reloaded.predict(x_val[:256], verbose=0) - probs[:256])))
    if drift > 1e-6:
        raise SystemExit(f"the saved .keras file does not reproduce the model (diff {drift})")
    np.savez(workdir / "validation.npz", x=x_val, y=y_val, probs=probs)
    with open(workdir / "train.json", "w") as f:
        json.dump({
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            "keras_val_accuracy": accuracy,
            "params": int(model.count_params()),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "train_seconds": round(seconds, 1),
        }, f, indent=1)


# -- stage 2: export (gru_infer) -------------------------------------------------------


def export(workdir: Path, data_dir: Path) -> None:
    import gru_infer
    from gru_infer import demo

    trained = json.loads((workdir / "train.json").read_text())
    val = np.load(workdir / "validation.npz")
    x_val, y_val, keras_probs = val["x"], val["y"], val["probs"]

    model = gru_infer.convert(workdir / "waveforms.keras")
    probs = model(x_val)
    diff = float(np.max(np.abs(probs - keras_probs)))
    print(f"gru_infer vs Keras on {len(x_val)} validation sequences: max abs diff {diff:.2e}")
    if not diff <= TOLERANCE:
        raise SystemExit(f"gru_infer's outputs differ from Keras's by {diff} > {TOLERANCE}")
    accuracy = float(np.mean(probs.argmax(axis=1) == y_val))
    print(f"validation accuracy: Keras {trained['keras_val_accuracy']:.4f}, "
          f"gru_infer {accuracy:.4f}")

    data_dir.mkdir(parents=True, exist_ok=True)
    model_path = data_dir / demo.MODEL_FILE
    model.save(model_path)
    reloaded = gru_infer.load(model_path)
    if not np.array_equal(reloaded(x_val), probs):
        raise SystemExit("the saved gru_infer file does not reproduce the converted model")

    info = {
        "task": "waveform recognition: which periodic signal is this noisy sequence?",
        "labels": list(demo.WAVEFORMS),
        "input": "(batch, 64, 1) float32: one sample per step",
        "output": "(batch, 4) softmax probabilities, in the order of labels",
        "architecture": "Input(None, 1) -> GRU(32, return_sequences=True) -> GRU(32) "
                        "-> Dense(4, softmax)",
        "parameters": model.parameter_count,
        "signal": demo.SETTINGS,
        "generator": "gru_infer.demo.make_waveforms",
        "training": {
            "train_sequences": TRAIN_COUNT, "train_seed": TRAIN_SEED,
            "validation_sequences": VAL_COUNT, "validation_seed": VAL_SEED,
            "init_seed": INIT_SEED, "epochs": EPOCHS, "batch_size": BATCH,
            "optimizer": f"Adam, cosine decay from {LEARNING_RATE}, clipnorm 1.0",
            "seconds": trained["train_seconds"],
            "final_loss": trained["history"]["loss"][-1],
            "final_val_loss": trained["history"]["val_loss"][-1],
        },
        "keras_val_accuracy": trained["keras_val_accuracy"],
        "gru_infer_val_accuracy": accuracy,
        "max_abs_diff_vs_keras": diff,
        "keras_version": trained["keras_version"],
        "tensorflow_version": trained["tensorflow_version"],
        "made_by": "tools/train_example_model.py: trained with Keras 3 (TensorFlow backend), "
                   "saved as .keras, converted with gru_infer.convert",
    }
    with open(data_dir / demo.INFO_FILE, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes) and "
          f"{data_dir / demo.INFO_FILE}")


# -- both ----------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--train", metavar="DIR", type=Path, help="stage 1 only (TensorFlow)")
    stage.add_argument("--export", metavar="DIR", type=Path, help="stage 2 only (gru_infer)")
    parser.add_argument("--tf-python", default=os.environ.get("TF_PYTHON", DEFAULT_TF_PYTHON),
                        help="interpreter with TensorFlow + Keras 3 (default %(default)s)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with gru_infer (default: this one)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="where --export writes (default gru_infer/data)")
    args = parser.parse_args(argv)

    if args.train:
        args.train.mkdir(parents=True, exist_ok=True)
        train(args.train)
        return 0
    if args.export:
        export(args.export, args.data_dir)
        return 0
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="gru_infer_waveforms_") as tmp:
        subprocess.run([args.tf_python, script, "--train", tmp], check=True)
        subprocess.run([args.python, script, "--export", tmp, "--data-dir", str(args.data_dir)],
                       check=True, cwd=REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
