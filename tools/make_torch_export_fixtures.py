"""Write the torch.export and torch.onnx.export fixtures used by
tests/test_torch_export.py and tests/test_onnx.py.

Run with a Python that has torch, onnx, onnxscript and onnxruntime (the
fixtures were made with the CPU build of torch 2.13.0):

    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch==2.13.0 onnx onnxscript onnxruntime numpy
    /work/venvs/torch/bin/python tools/make_torch_export_fixtures.py

For each torch.export fixture NAME it writes, under tests/fixtures/torch_export/,
NAME.pt2 (torch.export.save of the model), NAME_sd.pt (torch.save of the same
model's state_dict(), for convert(..., forward=[...])) and NAME.npz (inputs,
torch's own outputs, and sd_<key> copies of every state-dict tensor); for each
ONNX fixture NAME.onnx and NAME.npz under tests/fixtures/onnx/.  Every file is
reloaded by its framework (torch.export.load, torch.load, onnx.checker and
onnxruntime) and checked against torch's outputs before it is kept, including
at a batch size (and, where the export allows, a length) other than the one
traced.  manifest.json in each folder describes every fixture.

Everything is seeded; a rerun with the same versions reproduces the numbers.
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

warnings.filterwarnings("ignore")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORT_DIR = REPO_ROOT / "tests" / "fixtures" / "torch_export"
ONNX_DIR = REPO_ROOT / "tests" / "fixtures" / "onnx"

EXPORT_MANIFEST: dict[str, dict] = {}
ONNX_MANIFEST: dict[str, dict] = {}
Dim = torch.export.Dim


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter N(0, 0.5^2), so biases are non-zero and gates not saturated."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def numpy_of(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().copy()


def as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------

class LastReluFc(nn.Module):
    """fc(relu(out[:, -1])): ReLU between the last step and the Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(torch.relu(out[:, -1]))


class SoftmaxHead(nn.Module):
    """torch.softmax called in forward (no nn.Softmax module)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        out, _ = self.gru(x)
        return torch.softmax(self.fc(out[:, -1]), dim=-1)


class FinalStateHead(nn.Module):
    """fc(h_n[-1]) of a 2-layer GRU: the last layer's final state."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        _, h_n = self.gru(x)
        return self.fc(h_n[-1])


class EveryStep(nn.Module):
    """sigmoid(fc(out)) at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 1)

    def forward(self, x):
        out, _ = self.gru(x)
        return torch.sigmoid(self.fc(out))


class BidirStackedTimeMajor(nn.Module):
    """2-layer bidirectional GRU, time-major (batch_first=False); two outputs:
    log_softmax(fc(out[-1])) and h_n."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        out, h_n = self.gru(x)
        return torch.log_softmax(self.fc(out[-1]), dim=-1), h_n


class TwoGrus(nn.Module):
    """gru1 -> gru2 -> fc on the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru1 = nn.GRU(4, 8, batch_first=True)
        self.gru2 = nn.GRU(8, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        out1, _ = self.gru1(x)
        out2, _ = self.gru2(out1)
        return self.fc(out2[:, -1])


class EmbeddingGru(nn.Module):
    """Token ids -> nn.Embedding -> GRU -> fc on the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, tokens):
        out, _ = self.gru(self.emb(tokens))
        return self.fc(out[:, -1])


class ConvFront(nn.Module):
    """Conv1d front end over (B, C, T) with permutes around it, ReLU, GRU, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, kernel_size=3, padding=1)
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # x: (B, T, 4)
        c = torch.relu(self.conv(x.permute(0, 2, 1))).permute(0, 2, 1)
        out, _ = self.gru(c)
        return self.fc(out[:, -1])


class NormDropout(nn.Module):
    """GRU -> LayerNorm -> Dropout (identity in eval) -> tanh(fc) at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.ln = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.gru(x)
        return torch.tanh(self.fc(self.drop(self.ln(out))))


class NormalizedInput(nn.Module):
    """(x - mean) * inv_std -> GRU -> fc(last step) * scale: a persistent buffer, a
    non-persistent one, and a plain tensor attribute (lifted as a tensor constant)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(12)
        self.register_buffer("mean", torch.randn(4, generator=g))
        self.register_buffer("inv_std", torch.rand(4, generator=g) + 0.5, persistent=False)
        self.scale = torch.tensor([2.5])
        self.gru = nn.GRU(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.gru((x - self.mean) * self.inv_std)
        return self.fc(out[:, -1]) * self.scale


class BiFinalStates(nn.Module):
    """2-layer bidirectional GRU -> fc(cat(h_n[-2], h_n[-1])): the last layer's final
    states of both directions, the usual way to classify with a bidirectional GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        _, h_n = self.gru(x)
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


class BiEveryStep(nn.Module):
    """Bidirectional GRU -> relu -> fc at every step, plus the sum of two heads (a merge)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(10, 3)
        self.skip = nn.Linear(10, 3)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(torch.relu(out)) + self.skip(out)


class InitialState(nn.Module):
    """GRU with the initial state as a second input; returns out and h_n."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, batch_first=True)

    def forward(self, x, h0):
        return self.gru(x, h0)


# --------------------------------------------------------------------------------------
# torch.export fixtures
# --------------------------------------------------------------------------------------

def export_fixture(name: str, model: nn.Module, inputs: dict[str, torch.Tensor],
                   batch_axes: dict[str, int], forward: list[str] | None,
                   description: str, check_inputs: dict[str, torch.Tensor],
                   seed: int, notes: str = "") -> None:
    randomize(model, seed)
    model.eval()
    batch = Dim("batch", min=2, max=1024)
    dynamic = {key: {axis: batch} for key, axis in batch_axes.items()}
    example = tuple(inputs.values())
    program = torch.export.export(model, example, dynamic_shapes=dynamic)
    pt2 = EXPORT_DIR / f"{name}.pt2"
    torch.export.save(program, pt2)
    state_path = EXPORT_DIR / f"{name}_sd.pt"
    torch.save(model.state_dict(), state_path)

    # The npz holds check_inputs (another batch size than the traced one).
    with torch.no_grad():
        outputs = as_tuple(model(*check_inputs.values()))
    loaded = torch.export.load(pt2).module()
    with torch.no_grad():
        reloaded = as_tuple(loaded(*check_inputs.values()))
    for ours, theirs in zip(outputs, reloaded):
        assert torch.allclose(ours, theirs, atol=1e-6), name
    state = torch.load(state_path)
    for key, tensor in model.state_dict().items():
        assert torch.equal(state[key], tensor), (name, key)

    arrays = {}
    keys = list(check_inputs)
    for key, tensor in check_inputs.items():
        arrays[key] = numpy_of(tensor)
    single = len(outputs) == 1
    for index, tensor in enumerate(outputs):
        arrays["y" if single else f"y{index}"] = numpy_of(tensor)
    for key, tensor in model.state_dict().items():
        arrays[f"sd_{key}"] = numpy_of(tensor)
    # Tensors the program holds that state_dict() leaves out.
    others = {**{k: v for k, v in program.state_dict.items() if k not in model.state_dict()},
              **program.constants}
    for key, tensor in others.items():
        arrays[f"const_{key}"] = numpy_of(tensor)
    np.savez_compressed(EXPORT_DIR / f"{name}.npz", **arrays)

    with zipfile.ZipFile(pt2) as archive:
        records = sorted(archive.namelist())
    EXPORT_MANIFEST[name] = {
        "pt2": pt2.name,
        "state_dict": state_path.name,
        "npz": f"{name}.npz",
        "description": description,
        "forward": forward,
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                   for k, v in check_inputs.items()},
        "outputs": ["y"] if single else [f"y{i}" for i in range(len(outputs))],
        "traced_shapes": {k: list(v.shape) for k, v in inputs.items()},
        "dynamic": {k: f"axis {a} (batch, 2..1024); time static: torch specializes "
                       "aten.gru.input's time axis" for k, a in batch_axes.items()},
        # getitem nodes of the in-memory graph are folded into multi-output ops on save
        "ops": sorted({str(n.target) for n in program.graph.nodes
                       if n.op == "call_function" and "getitem" not in str(n.target)}),
        "records": records,
        "npz_keys": {**{k: "input" for k in keys},
                     **({"y": "torch's output"} if single else
                        {f"y{i}": f"torch's output {i}" for i in range(len(outputs))}),
                     "sd_<key>": "torch's copy of state-dict tensor <key>",
                     **({"const_<key>": "a tensor the program holds beyond state_dict() "
                                        "(non-persistent buffer, tensor constant)"}
                        if others else {})},
        "constants_beyond_state_dict": sorted(others),
        "notes": notes,
    }
    print(f"torch_export/{name}: {pt2.stat().st_size} B pt2, "
          f"{state_path.stat().st_size} B state dict")


def make_export_fixtures() -> None:
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    export_fixture(
        "last_relu_fc", LastReluFc(), {"x": rand(2, 7, 5)}, {"x": 0},
        ["gru", "last_step", "relu", "fc"],
        "GRU(5, 8, batch_first) -> fc(relu(out[:, -1])) (torch.relu in forward)",
        {"x": rand(3, 7, 5)}, seed=1)
    export_fixture(
        "softmax_head", SoftmaxHead(), {"x": rand(2, 6, 5)}, {"x": 0},
        ["gru", "last_step", "fc", "softmax"],
        "GRU(5, 8, batch_first) -> torch.softmax(fc(out[:, -1]), dim=-1)",
        {"x": rand(4, 6, 5)}, seed=2)
    export_fixture(
        "final_state_fc", FinalStateHead(), {"x": rand(2, 6, 5)}, {"x": 0},
        ["gru", "final_state", "fc"],
        "2-layer GRU(5, 8, batch_first) -> fc(h_n[-1])",
        {"x": rand(3, 6, 5)}, seed=3)
    export_fixture(
        "every_step_sigmoid", EveryStep(), {"x": rand(2, 5, 4)}, {"x": 0},
        ["gru", "fc", "sigmoid"],
        "GRU(4, 6, batch_first) -> torch.sigmoid(fc(out)) at every step",
        {"x": rand(3, 5, 4)}, seed=4)
    export_fixture(
        "bigru2_timemajor", BidirStackedTimeMajor(), {"x": rand(6, 2, 4)}, {"x": 1},
        ["gru", "last_step", "fc", "log_softmax"],
        "2-layer bidirectional GRU(4, 6), time-major; outputs "
        "log_softmax(fc(out[-1])) and h_n (4, B, 6)",
        {"x": rand(6, 3, 4)}, seed=5,
        notes="two outputs; forward= covers y0 only (h_n is the GRU's final state)")
    export_fixture(
        "two_grus", TwoGrus(), {"x": rand(2, 6, 4)}, {"x": 0},
        ["gru1", "gru2", "last_step", "fc"],
        "gru1 GRU(4, 8) -> gru2 GRU(8, 6) -> fc(out2[:, -1]), batch_first",
        {"x": rand(3, 6, 4)}, seed=6)
    tokens = torch.randint(0, 20, (2, 6), generator=g)
    export_fixture(
        "embedding_gru", EmbeddingGru(), {"tokens": tokens}, {"tokens": 0},
        ["emb", "gru", "last_step", "fc"],
        "token ids -> Embedding(20, 6) -> GRU(6, 8, batch_first) -> fc(out[:, -1])",
        {"tokens": torch.randint(0, 20, (3, 6), generator=g)}, seed=7)
    export_fixture(
        "conv_front", ConvFront(), {"x": rand(2, 7, 4)}, {"x": 0},
        None,
        "x (B, T, 4) -> permute -> Conv1d(4, 6, 3, padding=1) -> relu -> permute -> "
        "GRU(6, 8, batch_first) -> fc(out[:, -1])",
        {"x": rand(3, 7, 4)}, seed=8,
        notes="forward= cannot express the permutes around the Conv1d: convert the .pt2")
    export_fixture(
        "layernorm_dropout", NormDropout(), {"x": rand(2, 5, 4)}, {"x": 0},
        ["gru", "ln", "drop", "fc", "tanh"],
        "GRU(4, 8, batch_first) -> LayerNorm(8) -> Dropout(0.25, eval) -> "
        "torch.tanh(fc(.)) at every step",
        {"x": rand(3, 5, 4)}, seed=9)
    export_fixture(
        "buffers_constants", NormalizedInput(), {"x": rand(2, 5, 4)}, {"x": 0}, None,
        "(x - mean) * inv_std -> GRU(4, 6, batch_first) -> fc(out[:, -1]) * scale; mean a "
        "buffer, inv_std a non-persistent buffer, scale a plain tensor attribute",
        {"x": rand(3, 5, 4)}, seed=11,
        notes="inv_std and scale are not in state_dict(): the .pt2 carries them (constants "
              "config), so only the .pt2 converts")
    export_fixture(
        "bigru2_final_states", BiFinalStates(), {"x": rand(2, 6, 4)}, {"x": 0},
        ["gru", "final_states", "fc"],
        "2-layer bidirectional GRU(4, 6, batch_first) -> fc(cat(h_n[-2], h_n[-1]))",
        {"x": rand(3, 6, 4)}, seed=12)
    export_fixture(
        "bigru_every_step_merge", BiEveryStep(), {"x": rand(2, 5, 4)}, {"x": 0}, None,
        "bidirectional GRU(4, 5, batch_first) -> fc(relu(out)) + skip(out) at every step",
        {"x": rand(3, 5, 4)}, seed=13, notes="a merge of two heads: only the .pt2 says so")
    export_fixture(
        "initial_state", InitialState(), {"x": rand(2, 5, 4), "h0": rand(1, 2, 6)},
        {"x": 0, "h0": 1}, ["gru"],
        "GRU(4, 6, batch_first) with h0 as a second input; outputs out and h_n",
        {"x": rand(3, 5, 4), "h0": rand(1, 3, 6)}, seed=10,
        notes="two inputs (x, h0) and two outputs (out, h_n)")


# --------------------------------------------------------------------------------------
# ONNX fixtures (torch.onnx.export)
# --------------------------------------------------------------------------------------

class OnnxBiGruH0(nn.Module):
    """2-layer bidirectional GRU with h0; softmax(fc(out[:, -1])) and h_n."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x, h0):
        out, h_n = self.gru(x, h0)
        return torch.softmax(self.fc(out[:, -1]), dim=-1), h_n


class OnnxStackedEveryStep(nn.Module):
    """2-layer GRU, time-major, sigmoid(fc(out)) at every step (MatMul + Add)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 7, num_layers=2)
        self.fc = nn.Linear(7, 2)

    def forward(self, x):
        out, _ = self.gru(x)
        return torch.sigmoid(self.fc(out))


class OnnxPacked(nn.Module):
    """Bidirectional GRU over packed sequences (lengths), padded output and h_n."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, bidirectional=True, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=True)
        out, h_n = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, h_n


class OnnxBiFinalStates(nn.Module):
    """Bidirectional GRU -> sigmoid(fc(cat(h_n[0], h_n[1]))), time-major."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 6, bidirectional=True)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        _, h_n = self.gru(x)
        return torch.sigmoid(self.fc(torch.cat([h_n[0], h_n[1]], dim=1)))


class OnnxConvNorm(nn.Module):
    """Conv1d front end (permutes), GRU, LayerNorm, fc at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, kernel_size=3, padding=1)
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        c = torch.relu(self.conv(x.permute(0, 2, 1))).permute(0, 2, 1)
        out, _ = self.gru(c)
        return self.fc(self.ln(out))


class OnnxEmbedding(nn.Module):
    """Token ids -> Embedding (Gather) -> GRU -> tanh -> fc(last step) -> log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(16, 5)
        self.gru = nn.GRU(5, 6, batch_first=True)
        self.fc = nn.Linear(6, 4)

    def forward(self, tokens):
        out, _ = self.gru(self.emb(tokens))
        return torch.log_softmax(self.fc(torch.tanh(out[:, -1])), dim=-1)


def onnx_ops(path: Path) -> list[str]:
    import onnx
    model = onnx.load(str(path))
    return sorted({node.op_type for node in model.graph.node})


def check_onnx(path: Path, feeds: dict[str, np.ndarray], expected: list[np.ndarray],
               name: str) -> None:
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    assert len(got) == len(expected), name
    for ours, theirs in zip(expected, got):
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5, err_msg=name)


def onnx_fixture(name: str, model: nn.Module, example: dict[str, torch.Tensor],
                 checks: list[dict[str, torch.Tensor]], output_names: list[str],
                 dynamo: bool, dynamic_axes: dict, description: str, seed: int,
                 npz_extra: dict[str, np.ndarray] | None = None, notes: str = "") -> None:
    randomize(model, seed)
    model.eval()
    path = ONNX_DIR / f"{name}.onnx"
    feeds_names = list(example)
    if dynamo:
        dims: dict[str, Dim] = {}
        shapes = {}
        for key, axes in dynamic_axes.items():
            shapes[key] = {axis: dims.setdefault(label, Dim(label, min=2, max=1024))
                           for axis, label in axes.items()}
        program = torch.onnx.export(model, tuple(example.values()), dynamo=True,
                                    input_names=feeds_names, output_names=output_names,
                                    dynamic_shapes=shapes, optimize=True, verbose=False)
        program.save(str(path))
    else:
        torch.onnx.export(model, tuple(example.values()), str(path), dynamo=False,
                          input_names=feeds_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17)
    arrays: dict[str, np.ndarray] = {}
    for index, check in enumerate(checks):
        with torch.no_grad():
            outputs = [numpy_of(t) for t in as_tuple(model(*check.values()))]
        check_onnx(path, {k: numpy_of(v) for k, v in check.items()}, outputs, name)
        suffix = "" if index == 0 else f"_{index}"
        for key, tensor in check.items():
            arrays[f"{key}{suffix}"] = numpy_of(tensor)
        for i, out in enumerate(outputs):
            arrays[f"y{i}{suffix}"] = out
    for key, tensor in model.state_dict().items():
        arrays[f"sd_{key}"] = numpy_of(tensor)
    arrays.update(npz_extra or {})
    np.savez_compressed(ONNX_DIR / f"{name}.npz", **arrays)
    import onnx
    opset = {imp.domain or "ai.onnx": imp.version for imp in onnx.load(str(path)).opset_import}
    ONNX_MANIFEST[name] = {
        "onnx": path.name,
        "npz": f"{name}.npz",
        "generator": "tools/make_torch_export_fixtures.py",
        "exporter": "torch.onnx.export(dynamo=True)" if dynamo
        else "torch.onnx.export(dynamo=False) (TorchScript exporter)",
        "description": description,
        "opset": opset,
        "ops": onnx_ops(path),
        "emits_gru_op": "GRU" in onnx_ops(path),
        "inputs": feeds_names,
        "outputs": output_names,
        "dynamic_axes": {k: {str(a): lbl for a, lbl in v.items()} for k, v in dynamic_axes.items()},
        "checks": [{k: list(v.shape) for k, v in c.items()} for c in checks],
        "npz_keys": {
            "<input>[_k]": "inputs of check k (no suffix for the first)",
            "y<i>[_k]": "torch's output i for check k (onnxruntime agrees to 1e-5)",
            "sd_<key>": "torch's copy of state-dict tensor <key>",
        },
        "notes": notes,
    }
    print(f"onnx/{name}: {path.stat().st_size} B, ops {onnx_ops(path)}")


def make_onnx_fixtures() -> None:
    g = torch.Generator().manual_seed(11)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    onnx_fixture(
        "ts_bigru2_h0_softmax", OnnxBiGruH0(), {"x": rand(2, 5, 4), "h0": rand(4, 2, 6)},
        [{"x": rand(3, 7, 4), "h0": rand(4, 3, 6)}, {"x": rand(1, 4, 4), "h0": rand(4, 1, 6)}],
        ["y", "h_n"], dynamo=False,
        dynamic_axes={"x": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "y": {0: "batch"},
                      "h_n": {1: "batch"}},
        description="2-layer bidirectional GRU(4, 6, batch_first) with h0 input; "
                    "softmax(fc(out[:, -1])) (Gather + Gemm + Softmax) and h_n",
        seed=21)
    onnx_fixture(
        "ts_gru2_every_step", OnnxStackedEveryStep(), {"x": rand(5, 2, 5)},
        [{"x": rand(6, 3, 5)}, {"x": rand(2, 1, 5)}], ["y"], dynamo=False,
        dynamic_axes={"x": {0: "time", 1: "batch"}, "y": {0: "time", 1: "batch"}},
        description="2-layer GRU(5, 7), time-major; sigmoid(fc(out)) at every step "
                    "(MatMul + Add + Sigmoid)",
        seed=22)
    lengths = torch.tensor([6, 4, 2])
    onnx_fixture(
        "ts_packed_lengths", OnnxPacked(), {"x": rand(3, 6, 4), "lengths": lengths},
        [{"x": rand(3, 6, 4), "lengths": lengths}], ["y", "h_n"], dynamo=False,
        dynamic_axes={"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
        description="bidirectional GRU(4, 5, batch_first) over pack_padded_sequence "
                    "(sorted lengths); padded output and h_n",
        seed=23)
    onnx_fixture(
        "ts_embedding", OnnxEmbedding(), {"tokens": torch.randint(0, 16, (2, 5), generator=g)},
        [{"tokens": torch.randint(0, 16, (3, 8), generator=g)}], ["y"], dynamo=False,
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "y": {0: "batch"}},
        description="token ids -> Embedding(16, 5) (Gather) -> GRU(5, 6, batch_first) -> "
                    "tanh(out[:, -1]) -> fc -> log_softmax",
        seed=24)
    onnx_fixture(
        "ts_bigru_final_states", OnnxBiFinalStates(), {"x": rand(5, 2, 5)},
        [{"x": rand(7, 3, 5)}, {"x": rand(3, 1, 5)}], ["y"], dynamo=False,
        dynamic_axes={"x": {0: "time", 1: "batch"}, "y": {0: "batch"}},
        description="bidirectional GRU(5, 6), time-major -> sigmoid(fc(cat(h_n[0], h_n[1]))) "
                    "(Y_h -> Gather -> Concat -> Gemm -> Sigmoid)",
        seed=25)
    onnx_fixture(
        "ts_conv_layernorm", OnnxConvNorm(), {"x": rand(2, 6, 4)},
        [{"x": rand(3, 9, 4)}], ["y"], dynamo=False,
        dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}},
        description="x -> Transpose -> Conv(4->6, k=3, pads 1) -> Relu -> Transpose -> GRU(6, 8) "
                    "-> LayerNormalization -> MatMul + Add at every step",
        seed=26)
    onnx_fixture(
        "dynamo_bigru2_h0_softmax", OnnxBiGruH0(), {"x": rand(2, 5, 4), "h0": rand(4, 2, 6)},
        [{"x": rand(3, 5, 4), "h0": rand(4, 3, 6)}], ["y", "h_n"], dynamo=True,
        dynamic_axes={"x": {0: "batch"}, "h0": {1: "batch"}},
        description="the same model as ts_bigru2_h0_softmax through the dynamo exporter "
                    "(torch.export then onnxscript): dynamic batch, time static",
        seed=21,
        notes="the dynamo exporter goes through torch.export, which specializes the time "
              "axis of aten.gru.input; the reshape after each GRU is computed from Shape")


def write_manifest(directory: Path, fixtures: dict[str, dict], extra: dict) -> None:
    path = directory / "manifest.json"
    manifest = {}
    if path.exists():
        manifest = json.loads(path.read_text())
    manifest.update(extra)
    kept = {k: v for k, v in manifest.get("fixtures", {}).items()
            if v.get("generator", "tools/make_torch_export_fixtures.py")
            != "tools/make_torch_export_fixtures.py"}
    kept.update(fixtures)
    manifest["fixtures"] = dict(sorted(kept.items()))
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    import onnx
    import onnxruntime
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    make_export_fixtures()
    make_onnx_fixtures()
    versions = {
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "byteorder": sys.byteorder,
    }
    write_manifest(EXPORT_DIR, EXPORT_MANIFEST,
                   {"generator": "tools/make_torch_export_fixtures.py", **versions})
    write_manifest(ONNX_DIR, ONNX_MANIFEST,
                   {"torch_exporter_versions": {**versions, "onnx_version": onnx.__version__,
                                                "onnxruntime_version": onnxruntime.__version__}})


if __name__ == "__main__":
    main()
