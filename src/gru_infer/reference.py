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


# -- the layers around GRUs, one row and one output step at a time ---------------------


def conv1d_reference(x, kernel, bias=None, *, strides=1, dilation=1, groups=1, pads=(0, 0)):
    """y[b, t, f] = bias[f] + sum_k sum_c xpad[b, t*s + k*d, g*cin + c] kernel[k, c, f]
    for f in group g: x (batch, time, channels), kernel (size, channels / groups, filters)."""
    x = np.asarray(x, np.float64)
    size, per_group, filters = kernel.shape
    padded = np.concatenate([np.zeros((x.shape[0], pads[0], x.shape[2])), x,
                             np.zeros((x.shape[0], pads[1], x.shape[2]))], axis=1)
    length = (padded.shape[1] - dilation * (size - 1) - 1) // strides + 1
    per_out = filters // groups
    y = np.zeros((x.shape[0], max(length, 0), filters))
    for b in range(x.shape[0]):
        for t in range(max(length, 0)):
            for f in range(filters):
                g = f // per_out
                total = 0.0 if bias is None else float(bias[f])
                for k in range(size):
                    for c in range(per_group):
                        total += padded[b, t * strides + k * dilation, g * per_group + c] * kernel[k, c, f]
                y[b, t, f] = total
    return y


def pool1d_reference(x, *, mode, pool_size, strides, padding):
    """Max / average over windows of time; "same" windows hold real steps only."""
    x = np.asarray(x, np.float64)
    steps = x.shape[1]
    if padding == "same":
        length = -(-steps // strides)
        start = -(max(0, (length - 1) * strides + pool_size - steps) // 2)
    else:
        length, start = max(0, (steps - pool_size) // strides + 1), 0
    y = np.zeros((x.shape[0], length, x.shape[2]))
    for i in range(length):
        window = x[:, max(0, start + i * strides): min(steps, start + i * strides + pool_size)]
        y[:, i] = window.max(axis=1) if mode == "max" else window.mean(axis=1)
    return y


def layer_norm_reference(x, gamma=None, beta=None, epsilon=1e-3):
    x = np.asarray(x, np.float64)
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + epsilon)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)
