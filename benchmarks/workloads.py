"""The workloads of DESIGN.md §3, with one set of random weights for every engine.

Weights are drawn once from a fixed seed in the canonical (ONNX) form:
W (1, 3H, I), R (1, 3H, H), B (1, 6H) = [Wb | Rb], gate blocks z, r, h, and a
Dense head kernel (O, H_last) with bias (O,). Every peer module maps this same
spec into its own framework, so all engines compute the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED = 20240611


@dataclass(frozen=True)
class GRUWeights:
    W: np.ndarray  # (1, 3H, I)
    R: np.ndarray  # (1, 3H, H)
    B: np.ndarray  # (1, 6H)

    @property
    def input_size(self) -> int:
        return self.W.shape[2]

    @property
    def hidden_size(self) -> int:
        return self.R.shape[2]


@dataclass(frozen=True)
class ModelSpec:
    """Stacked forward GRU layers (return sequences), then an optional Dense+sigmoid per step."""

    name: str
    layers: tuple[GRUWeights, ...]
    dense_W: np.ndarray | None = None  # (O, H_last); None: the model's output is the last GRU's y
    dense_b: np.ndarray | None = None  # (O,)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.dense_W.shape[0] if self.dense_W is not None else self.layers[-1].hidden_size

    @property
    def num_weights(self) -> int:
        arrays = [a for l in self.layers for a in (l.W, l.R, l.B)]
        arrays += [a for a in (self.dense_W, self.dense_b) if a is not None]
        return sum(a.size for a in arrays)


@dataclass(frozen=True)
class Workload:
    key: str  # "W1".."W4", or the extra "tiny"
    title: str
    spec: ModelSpec
    batch: int
    steps: int
    stream: bool  # True: one timestep per call, state carried between calls


def _uniform(rng, shape, bound):
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _gru(rng, input_size: int, hidden_size: int) -> GRUWeights:
    # PyTorch's default init range: keeps activations in the non-saturated
    # range so the error check is meaningful (saturated gates hide mistakes).
    k = 1.0 / np.sqrt(hidden_size)
    return GRUWeights(
        W=_uniform(rng, (1, 3 * hidden_size, input_size), k),
        R=_uniform(rng, (1, 3 * hidden_size, hidden_size), k),
        B=_uniform(rng, (1, 6 * hidden_size), k),
    )


def model_m(seed: int = SEED) -> ModelSpec:
    """input 100 -> GRU(256, sequences) -> GRU(128, sequences) -> Dense(1, sigmoid) per step."""
    rng = np.random.default_rng(seed)
    g1, g2 = _gru(rng, 100, 256), _gru(rng, 256, 128)
    k = 1.0 / np.sqrt(128)
    return ModelSpec("M", (g1, g2), _uniform(rng, (1, 128), k), _uniform(rng, (1,), k))


def big_layer(seed: int = SEED + 1) -> ModelSpec:
    """One GRU layer I=512, H=512, no head: W4."""
    return ModelSpec("big", (_gru(np.random.default_rng(seed), 512, 512),))


def tiny_layer(seed: int = SEED + 2) -> ModelSpec:
    """One GRU layer I=8, H=8: a step on it costs almost nothing but the call itself."""
    return ModelSpec("tiny", (_gru(np.random.default_rng(seed), 8, 8),))


def make_input(spec: ModelSpec, batch: int, steps: int, seed: int = SEED + 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, steps, spec.input_size)).astype(np.float32)


def gru_flops(spec: ModelSpec, batch: int, steps: int) -> float:
    """2·3·H·(I+H) FLOP per step per sequence and layer (the matmuls only)."""
    return float(sum(2 * 3 * l.hidden_size * (l.input_size + l.hidden_size) for l in spec.layers) * batch * steps)


def workloads() -> dict:
    m = model_m()
    return {
        "W1": Workload("W1", "stream: M, batch 1, 1 step/call", m, 1, 1, True),
        "W2": Workload("W2", "seq: M, batch 1, T=100", m, 1, 100, False),
        "W3": Workload("W3", "throughput: M, batch 64, T=100", m, 64, 100, False),
        "W4": Workload("W4", "big: GRU I=512 H=512, batch 32, T=200", big_layer(), 32, 200, False),
    }


def tiny_workload() -> Workload:
    return Workload("tiny", "Python overhead: GRU I=8 H=8, batch 1, 1 step/call", tiny_layer(), 1, 1, True)


def sweep_workload(batch: int) -> Workload:
    return Workload(f"sweep-B{batch}", f"M, batch {batch}, T=100", model_m(), batch, 100, False)


def reference_forward(spec: ModelSpec, x: np.ndarray, state=None):
    """The plain NumPy reference over the whole model: y (B, T, O) and the per-layer final states."""
    from gru_infer.reference import gru_reference

    h = x
    states = []
    for i, layer in enumerate(spec.layers):
        h, h_n = gru_reference(h, layer.W, layer.R, layer.B, linear_before_reset=True,
                               direction="forward",
                               initial_state=None if state is None else state[i])
        states.append(h_n)
    return dense_head(spec, h), states


def dense_head(spec: ModelSpec, h: np.ndarray) -> np.ndarray:
    """Dense + sigmoid on (..., H_last); the identity when the spec has no head."""
    if spec.dense_W is None:
        return h
    logits = h @ spec.dense_W.T + spec.dense_b
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
