"""gru_infer.reference: the plain NumPy ground truth, one row and one step at a time.

Slow by design (Python loops over batch rows and timesteps): the harness times
it with fewer repeats on the big workloads and says so in the report.
"""

from __future__ import annotations

import numpy as np

from ..workloads import reference_forward
from ._lazy import import_error

NAME = "numpy_ref"


def unavailable_reason():
    return import_error("gru_infer.reference")


def available() -> bool:
    return unavailable_reason() is None


class Engine:
    # NumPy's own thread count is whatever OPENBLAS_NUM_THREADS/OMP_NUM_THREADS
    # said at import: the harness sets them per subprocess.
    def __init__(self, spec, threads):
        self.spec = spec
        self.states = None

    def run(self, x):
        return reference_forward(self.spec, x)[0]

    def reset(self, batch):
        self.states = [np.zeros((1, batch, l.hidden_size), np.float32) for l in self.spec.layers]

    def step(self, x_t):
        y, self.states = reference_forward(self.spec, x_t[:, None, :], self.states)
        return y[:, 0]


def build(spec, threads):
    return Engine(spec, threads)
