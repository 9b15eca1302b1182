"""Write the tf2onnx fixtures (Keras GRU models converted to ONNX) used by
tests/test_onnx.py.

tf2onnx needs TensorFlow in a version it supports; these were made with
TensorFlow 2.15.1 (Keras 2.15) and tf2onnx 1.16.1:

    python3 -m venv /work/venvs/tf2onnx
    /work/venvs/tf2onnx/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1 \
        onnxruntime "numpy<2"
    /work/venvs/tf2onnx/bin/python tools/make_tf2onnx_fixtures.py

For each fixture NAME it writes tests/fixtures/onnx/NAME.onnx and NAME.npz
(x, Keras's own outputs y0.., and k_<layer>_<i> copies of each layer's
weights as Keras holds them) and records it in manifest.json, next to the
torch.onnx.export fixtures (made by tools/make_torch_export_fixtures.py,
whose entries this script leaves alone).  Every file is checked with
onnx.checker and run with onnxruntime against Keras before it is kept.
Whether tf2onnx emitted a GRU op or a Loop/Scan for the recurrence is
recorded per fixture ("emits_gru_op").
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

REPO_ROOT = Path(__file__).resolve().parents[1]
ONNX_DIR = REPO_ROOT / "tests" / "fixtures" / "onnx"
GENERATOR = "tools/make_tf2onnx_fixtures.py"
MANIFEST: dict[str, dict] = {}


def randomize(model: tf.keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype)
                           for w in layer.get_weights()])


def fixture(name: str, model: tf.keras.Model, x: np.ndarray, checks: list[np.ndarray],
            description: str, seed: int, opset: int = 15) -> None:
    randomize(model, seed)
    spec = (tf.TensorSpec((None, None, x.shape[2]), tf.float32, name="x"),)
    path = ONNX_DIR / f"{name}.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset,
                               output_path=str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays: dict[str, np.ndarray] = {}
    for index, check in enumerate(checks):
        expected = model(check, training=False)
        expected = [np.asarray(e) for e in (expected if isinstance(expected, list)
                                            else [expected])]
        got = session.run(None, {session.get_inputs()[0].name: check})
        for ours, theirs in zip(expected, got):
            np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5, err_msg=name)
        suffix = "" if index == 0 else f"_{index}"
        arrays[f"x{suffix}"] = check
        for i, out in enumerate(expected):
            arrays[f"y{i}{suffix}"] = out
    for layer in model.layers:
        for i, weight in enumerate(layer.get_weights()):
            arrays[f"k_{layer.name}_{i}"] = weight
    np.savez_compressed(ONNX_DIR / f"{name}.npz", **arrays)
    ops = sorted({node.op_type for node in proto.graph.node})
    MANIFEST[name] = {
        "onnx": path.name,
        "npz": f"{name}.npz",
        "generator": GENERATOR,
        "exporter": f"tf2onnx {tf2onnx.__version__} from_keras (TensorFlow {tf.__version__})",
        "description": description,
        "opset": {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import},
        "ops": ops,
        "emits_gru_op": "GRU" in ops,
        "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output],
        "dynamic_axes": {"x": {"0": "batch", "1": "time"}},
        "checks": [{"x": list(c.shape)} for c in checks],
        "npz_keys": {
            "x[_k]": "input of check k (no suffix for the first)",
            "y<i>[_k]": "Keras's output i for check k (onnxruntime agrees to 1e-5)",
            "k_<layer>_<i>": "Keras's weight i of layer <layer> (get_weights order)",
        },
    }
    print(f"onnx/{name}: {path.stat().st_size} B, ops {ops}")


def main() -> None:
    layers = tf.keras.layers
    rng = np.random.default_rng(5)

    def rand(*shape):
        return rng.normal(0, 1, shape).astype(np.float32)

    inputs = layers.Input((None, 4))
    hidden = layers.GRU(6, name="gru")(inputs)
    model = tf.keras.Model(inputs, layers.Dense(3, activation="softmax", name="dense")(hidden))
    fixture("tf2onnx_gru_softmax", model, rand(2, 5, 4), [rand(3, 7, 4), rand(1, 2, 4)],
            "Keras GRU(6) (reset_after=True) -> Dense(3, softmax)", seed=31)

    inputs = layers.Input((None, 4))
    hidden = layers.GRU(5, reset_after=False, return_sequences=True, name="gru")(inputs)
    model = tf.keras.Model(inputs, layers.Dense(2, activation="sigmoid", name="dense")(hidden))
    fixture("tf2onnx_gru_reset_before_seq", model, rand(2, 5, 4), [rand(3, 6, 4)],
            "Keras GRU(5, reset_after=False, return_sequences) -> Dense(2, sigmoid) "
            "at every step", seed=32)

    inputs = layers.Input((None, 4))
    hidden = layers.Bidirectional(layers.GRU(5, name="gru"), name="bidi")(inputs)
    model = tf.keras.Model(inputs, layers.Dense(2, name="dense")(hidden))
    fixture("tf2onnx_bigru", model, rand(2, 5, 4), [rand(3, 6, 4)],
            "Keras Bidirectional(GRU(5)) (concat) -> Dense(2)", seed=33)

    inputs = layers.Input((None, 4))
    hidden = layers.GRU(6, return_sequences=True, name="gru1")(inputs)
    hidden = layers.GRU(4, name="gru2")(hidden)
    model = tf.keras.Model(inputs, layers.Dense(1, activation="tanh", name="dense")(hidden))
    fixture("tf2onnx_gru2", model, rand(2, 5, 4), [rand(3, 6, 4)],
            "Keras GRU(6, return_sequences) -> GRU(4) -> Dense(1, tanh)", seed=34)

    path = ONNX_DIR / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest["tf2onnx_versions"] = {
        "tensorflow_version": tf.__version__, "tf2onnx_version": tf2onnx.__version__,
        "onnx_version": onnx.__version__, "onnxruntime_version": ort.__version__,
        "numpy_version": np.__version__, "python_version": platform.python_version(),
        "byteorder": sys.byteorder,
    }
    fixtures = {k: v for k, v in manifest.get("fixtures", {}).items()
                if v.get("generator") != GENERATOR}
    fixtures.update(MANIFEST)
    manifest["fixtures"] = dict(sorted(fixtures.items()))
    path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
