"""Long runs keep memory flat: streamed steps, convert/save/load cycles, refused
hostile files.  Resident memory is read from /proc/self/statm (Linux); each run
warms up, then must not grow between its middle and its end by more than a
small allowance (a leak of a few KB per cycle would show as megabytes)."""

import gc
import os
import shutil
import sys

import numpy as np
import pytest

import gru_infer
from gru_infer.errors import GruInferError

HERE = os.path.dirname(__file__)
TORCH = os.path.join(HERE, "fixtures", "torch")
REGRESSIONS = os.path.join(HERE, "fixtures", "regressions")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm"),
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                       reason="AddressSanitizer keeps freed memory in quarantine"),
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(run, cycles: int) -> int:
    """Bytes resident memory grew over the second half of cycles (after a warm-up)."""
    for i in range(max(1, cycles // 10)):
        run(i)
    gc.collect()
    middle = None
    for i in range(cycles):
        if i == cycles // 2:
            gc.collect()
            middle = rss_bytes()
        run(i)
    gc.collect()
    return rss_bytes() - middle


def test_streaming_1e5_steps_keeps_memory_flat():
    model = gru_infer.convert(os.path.join(TORCH, "seq_module.pt"))
    stream = model.stream(batch_size=1)
    features = model.input_shape[-1]
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((64, 1, features)).astype(np.float32)
    out = np.empty_like(stream.step(steps[0]))

    def run(i):
        stream.step(steps[i % 64], out=out)
        if i % 1000 == 0:
            stream.reset()

    assert growth(run, 100_000) < 1 << 20


@pytest.mark.filterwarnings("ignore::gru_infer.GruInferWarning")  # the forward a state dict assumes
def test_1e3_convert_save_load_cycles_keep_memory_flat(tmp_path):
    path = str(tmp_path / "model.safetensors")
    source = os.path.join(TORCH, "gru_nobias.pt")
    x = np.ones((1, 4, gru_infer.convert(source).input_shape[-1]), np.float32)

    def run(i):
        gru_infer.convert(source).save(path)
        gru_infer.load(path)(x)

    assert growth(run, 1000) < 4 << 20


def test_1e3_refused_hostile_files_keep_memory_flat(tmp_path):
    """Refusals of every in-process kind: PyTorch zip and legacy, zip damage,
    weight files.  (Keras files are read in a child process, whose memory goes
    with it; a few are included.)"""
    hostile = [os.path.join(REGRESSIONS, name) for name in (
        "rebuild_numel_240_data_16_bytes.pt", "keyerror_legacy.pt", "zip_version.pt",
        "attr_from_saved.safetensors", "accepted_bad_graph.safetensors")]
    truncated = str(tmp_path / "truncated.pt")
    with open(os.path.join(TORCH, "bigru2_linear_legacy.pt"), "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    hostile.append(truncated)
    keras = str(tmp_path / "overflow.keras")
    shutil.copy(os.path.join(REGRESSIONS, "overflow.keras"), keras)

    def run(i):
        path = keras if i % 250 == 0 else hostile[i % len(hostile)]
        with pytest.raises(GruInferError):
            if path.endswith(".safetensors"):
                gru_infer.load(path)(np.zeros((1, 3, 100), np.float32))
            else:
                gru_infer.convert(path)

    assert growth(run, 1000) < 2 << 20
