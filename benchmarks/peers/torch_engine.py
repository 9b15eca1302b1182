"""PyTorch eager: nn.GRU (batch_first) per layer + nn.Linear + sigmoid, under inference_mode."""

from __future__ import annotations

import numpy as np

from ._lazy import import_error

NAME = "torch"


def unavailable_reason():
    return import_error("torch")


def available() -> bool:
    return unavailable_reason() is None


def _zrh_to_rzn(a, H):
    """Canonical gate blocks (z, r, h) along axis 0 -> PyTorch's (r, z, n)."""
    return np.concatenate([a[H:2 * H], a[:H], a[2 * H:]], axis=0)


class Engine:
    def __init__(self, spec, threads):
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)  # one op at a time, like the other engines
        except RuntimeError:
            pass  # may only be set once per process, before any parallel work
        self.torch = torch
        self.grus = []
        with torch.no_grad():
            for l in spec.layers:
                H = l.hidden_size
                gru = torch.nn.GRU(l.input_size, H, batch_first=True)
                gru.weight_ih_l0.copy_(torch.from_numpy(_zrh_to_rzn(l.W[0], H)))
                gru.weight_hh_l0.copy_(torch.from_numpy(_zrh_to_rzn(l.R[0], H)))
                gru.bias_ih_l0.copy_(torch.from_numpy(_zrh_to_rzn(l.B[0, :3 * H], H)))
                gru.bias_hh_l0.copy_(torch.from_numpy(_zrh_to_rzn(l.B[0, 3 * H:], H)))
                self.grus.append(gru.eval())
            self.dense = None
            if spec.dense_W is not None:
                self.dense = torch.nn.Linear(spec.dense_W.shape[1], spec.dense_W.shape[0])
                self.dense.weight.copy_(torch.from_numpy(spec.dense_W))
                self.dense.bias.copy_(torch.from_numpy(spec.dense_b))
                self.dense.eval()
        self.states = None

    def _head(self, h):
        return h if self.dense is None else self.torch.sigmoid(self.dense(h))

    def run(self, x):
        with self.torch.inference_mode():
            h = self.torch.from_numpy(x)  # zero copy
            for gru in self.grus:
                h, _ = gru(h)
            return self._head(h).numpy()

    def reset(self, batch):
        self.states = [self.torch.zeros(1, batch, g.hidden_size) for g in self.grus]

    def step(self, x_t):
        # Streaming in PyTorch eager: a T=1 call with the carried h.
        with self.torch.inference_mode():
            h = self.torch.from_numpy(x_t).unsqueeze(1)
            for i, gru in enumerate(self.grus):
                h, self.states[i] = gru(h, self.states[i])
            return self._head(h[:, 0]).numpy()


def build(spec, threads):
    return Engine(spec, threads)
