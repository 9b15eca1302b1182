"""gru_infer: the engine under test, model M as a gru_infer.Model."""

from __future__ import annotations

import numpy as np

from ._lazy import import_error

NAME = "gru_infer"


def unavailable_reason():
    return import_error("gru_infer")


def available() -> bool:
    return unavailable_reason() is None


def build_model(spec, precision="native"):
    """The spec's canonical weights as a gru_infer.Model, its GRU and Dense
    weights stored in precision."""
    from gru_infer import Model
    from gru_infer.spec.layers import Dense, GRUCell, Recurrent

    layers = [Recurrent(f"gru{i}", [GRUCell(l.W, l.R, l.B, linear_before_reset=True)])
              for i, l in enumerate(spec.layers)]
    if spec.dense_W is not None:
        layers.append(Dense("dense", spec.dense_W.T, spec.dense_b, activation="sigmoid"))
    model = Model.sequential(layers, input_shape=(None, spec.input_size))
    return model.with_precision(precision)


class Engine:
    variant = "gru_infer.Model"

    def __init__(self, spec, threads, precision="native"):
        import gru_infer

        gru_infer.set_num_threads(threads or None)  # 0: the default (the core chooses)
        self.model = build_model(spec, precision)
        if precision != "native":
            self.variant = f"gru_infer.Model, {precision} weights"
        self.stream = None
        self.out = None

    def run(self, x):
        return self.model(x)

    def reset(self, batch):
        self.stream = self.model.stream(batch_size=batch)
        self.out = None

    def step(self, x_t):
        # Written into one preallocated array, as the ONNX Runtime peer's I/O binding does.
        if self.out is None:
            self.out = np.array(self.stream.step(x_t))
            return self.out
        return self.stream.step(x_t, out=self.out)


def build(spec, threads):
    return Engine(spec, threads)
