"""Write the PyTorch checkpoint fixtures used by tests/test_torch_file.py.

Run with a Python that has torch installed (the fixtures were made with the
CPU build of torch 2.13.0):

    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch==2.13.0 numpy
    /work/venvs/torch/bin/python tools/make_torch_fixtures.py

Everything is seeded, so a rerun with the same torch version reproduces the
same numbers; the zip checkpoints even come out byte-identical, the legacy
ones do not (their storage keys are the storages' memory addresses).

For each fixture NAME the script writes the checkpoint (NAME.pt) and NAME.npz
holding inputs plus torch's own outputs, and describes all of them in
manifest.json.  The readers under test must work without torch, so every
expected value is stored as a plain NumPy array.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "torch"

MANIFEST: dict[str, dict] = {}


class Net(nn.Module):
    """Two-layer bidirectional GRU followed by a Linear applied at every step.

    Defined in this script's ``__main__`` on purpose: a whole-module pickle
    then references ``__main__.Net``, which a reader cannot (and must not)
    import.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_n = self.gru(x)
        return self.head(y), h_n


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)


class Seq2One(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.encoder.rnn(x)
        return self.decoder(y[:, -1])  # decode the last step only


class TrainingWrapper(nn.Module):
    """Adds the ``model.`` prefix that wrapped models commonly have."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Seq2One()


def randomize(module: nn.Module, seed: int) -> None:
    """Reinitialise every parameter as N(0, 0.5^2) so biases are non-zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def state_dict_arrays(module: nn.Module, prefix: str = "sd_") -> dict[str, np.ndarray]:
    """Copies of every state-dict tensor, as float32/float64 NumPy arrays."""
    return {
        prefix + name: tensor.detach().float().numpy()
        if tensor.dtype in (torch.float16, torch.bfloat16)
        else tensor.detach().numpy()
        for name, tensor in module.state_dict().items()
    }


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().copy()


def write_npz(name: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(FIXTURE_DIR / f"{name}.npz", **arrays)


def record(name: str, checkpoint: str, description: str, options: dict,
           npz_keys: dict[str, str], top_level: str) -> None:
    MANIFEST[name] = {
        "checkpoint": checkpoint,
        "npz": f"{name}.npz",
        "description": description,
        "top_level_object": top_level,
        "options": options,
        "npz_keys": npz_keys,
    }


# --------------------------------------------------------------------------
# Fixtures 1-3: the same bidirectional two-layer net, saved three ways.
# --------------------------------------------------------------------------

def make_bigru2_linear() -> None:
    torch.manual_seed(1)
    net = Net()
    randomize(net, seed=1)
    net.eval()
    x = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        y, h_n = net(x)

    arrays = {"x": as_numpy(x), "y": as_numpy(y), "h_n": as_numpy(h_n)}
    arrays.update(state_dict_arrays(net))
    npz_keys = {
        "x": "input, batch-first (B=3, T=6, 5)",
        "y": "head(gru(x)[0]): Linear applied at every step, (3, 6, 3)",
        "h_n": "final GRU hidden state (num_layers*2=4, B=3, 8), torch order "
               "[l0 fwd, l0 bwd, l1 fwd, l1 bwd]",
        "sd_<name>": "torch's own copy of every state-dict tensor <name>",
    }
    options = {"input_size": 5, "hidden_size": 8, "num_layers": 2,
               "bidirectional": True, "batch_first": True, "bias": True,
               "head": "Linear(16, 3) on every time step"}

    # 1. state dict, zip format (torch >= 1.6 default)
    torch.save(net.state_dict(), FIXTURE_DIR / "bigru2_linear_sd.pt")
    write_npz("bigru2_linear_sd", arrays)
    record("bigru2_linear_sd", "bigru2_linear_sd.pt",
           "nn.Module 'Net' (gru: nn.GRU, head: nn.Linear) saved as "
           "torch.save(net.state_dict()) in the zip format.",
           options, npz_keys, "OrderedDict[str, Tensor] (keys gru.*, head.*)")

    # 2. whole module; the pickle references __main__.Net
    torch.save(net, FIXTURE_DIR / "bigru2_linear_module.pt")
    write_npz("bigru2_linear_module", arrays)
    record("bigru2_linear_module", "bigru2_linear_module.pt",
           "The same net saved whole with torch.save(net): the pickle "
           "references __main__.Net, torch.nn.modules.rnn.GRU and "
           "torch.nn.modules.linear.Linear; the reader must not import them.",
           options, npz_keys, "__main__.Net module object")

    # 3. state dict, legacy non-zip format
    torch.save(net.state_dict(), FIXTURE_DIR / "bigru2_linear_legacy.pt",
               _use_new_zipfile_serialization=False)
    write_npz("bigru2_linear_legacy", arrays)
    record("bigru2_linear_legacy", "bigru2_linear_legacy.pt",
           "The same state dict saved with _use_new_zipfile_serialization="
           "False (legacy format: magic, protocol, sys_info, pickle, storage "
           "keys, raw storages).",
           options, npz_keys, "OrderedDict[str, Tensor]")


# --------------------------------------------------------------------------
# 4. Time-major GRU with a non-zero initial state.
# --------------------------------------------------------------------------

def make_gru_timemajor_h0() -> None:
    gru = nn.GRU(4, 6, num_layers=1)
    randomize(gru, seed=4)
    g = torch.Generator().manual_seed(44)
    x = torch.randn(5, 2, 4, generator=g)
    h0 = torch.randn(1, 2, 6, generator=g)
    with torch.no_grad():
        y, h_n = gru(x, h0)
    torch.save(gru.state_dict(), FIXTURE_DIR / "gru_timemajor_h0.pt")
    arrays = {"x": as_numpy(x), "h0": as_numpy(h0), "y": as_numpy(y),
              "h_n": as_numpy(h_n)}
    arrays.update(state_dict_arrays(gru))
    write_npz("gru_timemajor_h0", arrays)
    record("gru_timemajor_h0", "gru_timemajor_h0.pt",
           "Bare nn.GRU(4, 6), batch_first=False (time-major), run from a "
           "non-zero h0.",
           {"input_size": 4, "hidden_size": 6, "num_layers": 1,
            "bidirectional": False, "batch_first": False, "bias": True},
           {"x": "input, time-major (T=5, B=2, 4)",
            "h0": "initial hidden state (1, 2, 6)",
            "y": "gru(x, h0)[0], time-major (5, 2, 6)",
            "h_n": "gru(x, h0)[1], (1, 2, 6)",
            "sd_<name>": "torch's copy of every state-dict tensor"},
           "OrderedDict[str, Tensor] (keys weight_ih_l0, ...)")


# --------------------------------------------------------------------------
# 5. Packed sequences, sorted and unsorted lengths.
# --------------------------------------------------------------------------

def make_packed() -> None:
    gru = nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    randomize(gru, seed=5)
    g = torch.Generator().manual_seed(55)
    batch, steps = 4, 7

    def padded_input(lengths: list[int]) -> torch.Tensor:
        # Garbage (large, non-zero) past each row's length: a correct
        # implementation must never look at it.
        x = torch.randn(batch, steps, 3, generator=g)
        for row, length in enumerate(lengths):
            x[row, length:] = 100.0 + torch.randn(steps - length, 3, generator=g)
        return x

    def run(x: torch.Tensor, lengths: list[int], enforce_sorted: bool):
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                      enforce_sorted=enforce_sorted)
        with torch.no_grad():
            out, h_n = gru(packed)
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        return y, h_n

    lengths_sorted = [7, 5, 3, 1]
    x_sorted = padded_input(lengths_sorted)
    y_sorted, h_n_sorted = run(x_sorted, lengths_sorted, enforce_sorted=True)

    lengths_unsorted = [3, 7, 1, 5]
    x_unsorted = padded_input(lengths_unsorted)
    y_unsorted, h_n_unsorted = run(x_unsorted, lengths_unsorted, enforce_sorted=False)

    torch.save(gru.state_dict(), FIXTURE_DIR / "packed.pt")
    arrays = {
        "x": as_numpy(x_sorted), "lengths": np.array(lengths_sorted, np.int64),
        "y_sorted": as_numpy(y_sorted), "h_n_sorted": as_numpy(h_n_sorted),
        "x_unsorted": as_numpy(x_unsorted),
        "lengths_unsorted": np.array(lengths_unsorted, np.int64),
        "y_unsorted": as_numpy(y_unsorted), "h_n_unsorted": as_numpy(h_n_unsorted),
    }
    arrays.update(state_dict_arrays(gru))
    write_npz("packed", arrays)
    record("packed", "packed.pt",
           "nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True) "
           "run on padded batches through pack_padded_sequence -> gru -> "
           "pad_packed_sequence(total_length=7). Inputs past each row's "
           "length hold garbage (~100), not zeros; padded outputs are 0.",
           {"input_size": 3, "hidden_size": 5, "num_layers": 2,
            "bidirectional": True, "batch_first": True, "bias": True},
           {"x": "padded input (B=4, T=7, 3) for the sorted case",
            "lengths": "row lengths, sorted descending [7, 5, 3, 1]",
            "y_sorted": "padded output (4, 7, 10), enforce_sorted=True",
            "h_n_sorted": "h_n (4, 4, 5) for the sorted case",
            "x_unsorted": "padded input (4, 7, 3) for the unsorted case",
            "lengths_unsorted": "row lengths [3, 7, 1, 5]",
            "y_unsorted": "padded output (4, 7, 10), enforce_sorted=False "
                          "(rows in the original order)",
            "h_n_unsorted": "h_n (4, 4, 5), rows in the original order",
            "sd_<name>": "torch's copy of every state-dict tensor"},
           "OrderedDict[str, Tensor]")


# --------------------------------------------------------------------------
# 6. No biases.
# --------------------------------------------------------------------------

def make_gru_nobias() -> None:
    gru = nn.GRU(4, 6, bias=False, batch_first=True)
    randomize(gru, seed=6)
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(66))
    with torch.no_grad():
        y, h_n = gru(x)
    torch.save(gru.state_dict(), FIXTURE_DIR / "gru_nobias.pt")
    arrays = {"x": as_numpy(x), "y": as_numpy(y), "h_n": as_numpy(h_n)}
    arrays.update(state_dict_arrays(gru))
    write_npz("gru_nobias", arrays)
    record("gru_nobias", "gru_nobias.pt", "nn.GRU(4, 6, bias=False, batch_first=True).",
           {"input_size": 4, "hidden_size": 6, "num_layers": 1,
            "bidirectional": False, "batch_first": True, "bias": False},
           {"x": "input (B=2, T=5, 4)", "y": "output (2, 5, 6)",
            "h_n": "final state (1, 2, 6)",
            "sd_<name>": "torch's copy of every state-dict tensor"},
           "OrderedDict[str, Tensor] (weight_ih_l0, weight_hh_l0 only)")


# --------------------------------------------------------------------------
# 7. Training checkpoint: nested dicts, prefixed names, optimizer state.
# --------------------------------------------------------------------------

def make_seq_module() -> None:
    net = TrainingWrapper()
    randomize(net, seed=7)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(77)
    # One real optimisation step, so the optimizer state holds tensors
    # (exp_avg, exp_avg_sq, step) next to ints, floats, bools and None.
    x_train = torch.randn(3, 4, 4, generator=g)
    loss = net.model(x_train).pow(2).mean()
    loss.backward()
    opt.step()

    x = torch.randn(2, 5, 4, generator=g)
    with torch.no_grad():
        y = net.model(x)
    checkpoint = {
        "epoch": 3,
        "model_state_dict": net.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
    }
    torch.save(checkpoint, FIXTURE_DIR / "seq_module.pt")
    arrays = {"x": as_numpy(x), "y": as_numpy(y)}
    arrays.update(state_dict_arrays(net))
    write_npz("seq_module", arrays)
    record("seq_module", "seq_module.pt",
           "Training checkpoint dict {'epoch': 3, 'model_state_dict': ..., "
           "'optimizer_state_dict': Adam state after one step}. Model names "
           "are model.encoder.rnn.* (nn.GRU(4, 6, batch_first=True)) and "
           "model.decoder.* (nn.Linear(6, 2) applied to the LAST step).",
           {"input_size": 4, "hidden_size": 6, "num_layers": 1,
            "bidirectional": False, "batch_first": True, "bias": True,
            "head": "Linear(6, 2) on y[:, -1]"},
           {"x": "input (B=2, T=5, 4)",
            "y": "decoder(gru(x)[0][:, -1]), (2, 2)",
            "sd_<name>": "torch's copy of every model_state_dict tensor"},
           "dict {'epoch': int, 'model_state_dict': OrderedDict, "
           "'optimizer_state_dict': dict}")


# --------------------------------------------------------------------------
# 8. Other floating-point dtypes.
# --------------------------------------------------------------------------

def make_dtypes() -> None:
    gru = nn.GRU(3, 4, batch_first=True).double()
    randomize(gru, seed=8)
    x = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(88),
                    dtype=torch.float64)
    with torch.no_grad():
        y, h_n = gru(x)
    torch.save(gru.state_dict(), FIXTURE_DIR / "float64.pt")
    arrays = {"x": as_numpy(x), "y": as_numpy(y), "h_n": as_numpy(h_n)}
    arrays.update(state_dict_arrays(gru))
    write_npz("float64", arrays)
    record("float64", "float64.pt", "nn.GRU(3, 4, batch_first=True).double().",
           {"input_size": 3, "hidden_size": 4, "num_layers": 1,
            "bidirectional": False, "batch_first": True, "dtype": "float64"},
           {"x": "float64 input (2, 3, 3)", "y": "float64 output (2, 3, 4)",
            "h_n": "float64 final state (1, 2, 4)",
            "sd_<name>": "float64 copy of every state-dict tensor"},
           "OrderedDict[str, Tensor(float64)]")

    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        gru = nn.GRU(3, 4, batch_first=True)
        randomize(gru, seed=9)
        gru = gru.to(dtype)
        torch.save(gru.state_dict(), FIXTURE_DIR / f"{name}.pt")
        write_npz(name, state_dict_arrays(gru, prefix="w_"))
        record(name, f"{name}.pt",
               f"nn.GRU(3, 4, batch_first=True).to({dtype}) state dict. "
               "Only the weights are stored (no outputs).",
               {"input_size": 3, "hidden_size": 4, "num_layers": 1,
                "bidirectional": False, "batch_first": True,
                "dtype": str(dtype).removeprefix("torch.")},
               {"w_<name>": f"float32 copy (exact) of the {dtype} tensor <name>"},
               f"OrderedDict[str, Tensor({str(dtype).removeprefix('torch.')})]")


# --------------------------------------------------------------------------
# 9. Views: storage offsets, strides, shared storages, odd dtypes.
# --------------------------------------------------------------------------

def make_noncontig() -> None:
    big = torch.arange(24, dtype=torch.float32).reshape(6, 4) * 0.5 - 3.0
    ints = torch.arange(10, dtype=torch.int64) * 7 - 20
    other = torch.randn(5, 3, generator=torch.Generator().manual_seed(99))
    tensors = {
        "a": big[2:5],            # storage offset 8, contiguous rows
        "b": big.t(),             # transposed: strides (1, 4)
        "c": big[:, 1],           # offset 1, stride 4
        "d": big,                 # the whole storage, shared with a/b/c
        "e": ints[1::3],          # int64, offset 1, stride 3
        "f": big[1].expand(3, 4),  # stride 0 along dim 0
        "g": torch.zeros(0, 3),   # empty
        "h": torch.tensor(2.5),   # 0-d scalar
        "i": torch.tensor([True, False, True]),
        "j": other[1:, ::2],      # 2-D offset and step
        "k": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "l": other._neg_view(),   # lazily negated view: saved with metadata {'neg': True}
    }
    expected = {key: as_numpy(t.resolve_neg()) for key, t in tensors.items()}
    torch.save(tensors, FIXTURE_DIR / "noncontig.pt")
    write_npz("noncontig", expected)
    torch.save(tensors, FIXTURE_DIR / "noncontig_legacy.pt",
               _use_new_zipfile_serialization=False)
    write_npz("noncontig_legacy", expected)
    npz_keys = {key: f"expected value of tensor '{key}'" for key in expected}
    desc = ("Plain dict of tensor views sharing storages: offsets, transposed "
            "strides, stride 0 (expand), empty, 0-d, bool, int32/int64, and a "
            "_neg_view (saved with metadata {'neg': True}).")
    record("noncontig", "noncontig.pt", desc + " Zip format.", {}, npz_keys,
           "dict[str, Tensor]")
    record("noncontig_legacy", "noncontig_legacy.pt", desc + " Legacy format.",
           {}, npz_keys, "dict[str, Tensor]")


def verify() -> None:
    """Reload every checkpoint with torch itself to make sure it is valid."""
    for name, entry in MANIFEST.items():
        path = FIXTURE_DIR / entry["checkpoint"]
        weights_only = name != "bigru2_linear_module"
        loaded = torch.load(path, weights_only=weights_only)
        expected = np.load(FIXTURE_DIR / entry["npz"])
        if name.startswith("noncontig"):
            for key in expected.files:
                got = loaded[key].resolve_neg().numpy()
                assert np.array_equal(got, expected[key]), (name, key)
        elif name == "bigru2_linear_module":
            assert isinstance(loaded, Net)
        print(f"verified {path.name} ({path.stat().st_size} bytes)")


def main() -> None:
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    make_bigru2_linear()
    make_gru_timemajor_h0()
    make_packed()
    make_gru_nobias()
    make_seq_module()
    make_dtypes()
    make_noncontig()
    manifest = {
        "generator": "tools/make_torch_fixtures.py",
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "byteorder": sys.byteorder,
        "fixtures": MANIFEST,
    }
    (FIXTURE_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    verify()


if __name__ == "__main__":
    main()
