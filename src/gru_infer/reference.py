"""Plain NumPy GRU: the ground truth the tests hold the C core to.

Written for clarity, one row and one step at a time, straight from the
equations in DESIGN.md; it shares no code with the engine's fast path.
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = ("forward", "reverse", "bidirectional")


def _hard_sigmoid(slope: float):
    return lambda v: np.clip(slope * v + 0.5, 0.0, 1.0)


def activation_function(name: str, hard_sigmoid: str = "keras3"):
    """The element-wise function an activation name stands for."""
    if name == "hard_sigmoid":
        return _hard_sigmoid(0.2 if hard_sigmoid == "keras2" else 1.0 / 6.0)
    table = {
        "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
        "tanh": np.tanh,
        "relu": lambda v: np.where(v < 0, 0.0, v).astype(v.dtype),
        "linear": lambda v: v,
        "softsign": lambda v: v / (1.0 + np.abs(v)),
    }
    return table[name]


def gru_reference(
    x,
    W,
    R,
    B=None,
    *,
    linear_before_reset=True,
    direction="forward",
    activations=("sigmoid", "tanh"),
    hard_sigmoid="keras3",
    initial_state=None,
    lengths=None,
    mask=None,
):
    """GRU over x (batch, time, input) with canonical weights.

    W (D, 3H, I), R (D, 3H, H), B (D, 6H) = [Wb | Rb], gate blocks z, r, h
    (or one direction's W (3H, I), R (3H, H), B (6H,)).
    Returns y (batch, time, D*H) and h_n (D, batch, H), computed in W's dtype.
    """
    if np.ndim(W) == 2:  # one direction
        W, R = np.asarray(W)[None], np.asarray(R)[None]
        B = None if B is None else np.asarray(B)[None]
    dtype = np.asarray(W).dtype
    x = np.asarray(x, dtype=dtype)
    W = np.asarray(W, dtype=dtype)
    R = np.asarray(R, dtype=dtype)
    D, G, _ = W.shape
    H = G // 3
    batch, steps, _ = x.shape
    if B is None:
        B = np.zeros((D, 6 * H), dtype)
    B = np.asarray(B, dtype=dtype)
    gate = activation_function(activations[0], hard_sigmoid)
    cand = activation_function(activations[1], hard_sigmoid)
    y = np.zeros((batch, steps, D * H), dtype)
    h_n = np.zeros((D, batch, H), dtype)
    reverse_of = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]

    for d, reverse in enumerate(reverse_of):
        Wz, Wr, Wh = W[d][:H], W[d][H : 2 * H], W[d][2 * H :]
        Rz, Rr, Rh = R[d][:H], R[d][H : 2 * H], R[d][2 * H :]
        wbz, wbr, wbh = B[d][:H], B[d][H : 2 * H], B[d][2 * H : 3 * H]
        rbz, rbr, rbh = B[d][3 * H : 4 * H], B[d][4 * H : 5 * H], B[d][5 * H :]
        for b in range(batch):
            h = np.zeros(H, dtype) if initial_state is None else np.array(initial_state[d][b], dtype)
            length = steps if lengths is None else int(lengths[b])
            order = range(length - 1, -1, -1) if reverse else range(length)
            previous_output = np.zeros(H, dtype)
            for t in order:
                if mask is not None and not mask[b][t]:
                    y[b, t, d * H : (d + 1) * H] = previous_output
                    continue
                xt = x[b, t]
                z = gate(Wz @ xt + wbz + Rz @ h + rbz)
                r = gate(Wr @ xt + wbr + Rr @ h + rbr)
                if linear_before_reset:
                    n = cand(Wh @ xt + wbh + r * (Rh @ h + rbh))
                else:
                    n = cand(Wh @ xt + wbh + Rh @ (r * h) + rbh)
                h = (1 - z) * n + z * h
                y[b, t, d * H : (d + 1) * H] = h
                previous_output = h
            h_n[d, b] = h
    return y, h_n
