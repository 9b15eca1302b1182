"""The bundled example model (gru_infer/data/waveforms.*) and the demo."""

import io
import json

import numpy as np
import pytest

import gru_infer
from gru_infer import demo


@pytest.fixture(scope="module")
def model():
    return demo.load_model()


def test_bundled_files_exist_and_are_small():
    weights = demo.DATA_DIR / demo.MODEL_FILE
    assert weights.is_file()
    assert weights.stat().st_size < 100_000
    info = json.loads((demo.DATA_DIR / demo.INFO_FILE).read_text(encoding="utf-8"))
    assert info["labels"] == list(demo.WAVEFORMS)
    assert info["signal"] == json.loads(json.dumps(demo.SETTINGS))
    assert info["keras_val_accuracy"] > 0.95
    assert info["max_abs_diff_vs_keras"] <= 1e-5


def test_model_shape(model):
    assert isinstance(model, gru_infer.Model)
    assert [layer.kind for layer in model.layers] == ["gru", "gru", "dense"]
    x, _ = demo.make_waveforms(3, 0)
    probs = model(x)
    assert probs.shape == (3, len(demo.WAVEFORMS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_generator_is_deterministic_and_balanced():
    x1, y1 = demo.make_waveforms(64, 7)
    x2, y2 = demo.make_waveforms(64, 7)
    assert x1.shape == (64, demo.STEPS, 1) and x1.dtype == np.float32
    assert y1.dtype == np.int64
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert np.bincount(y1, minlength=4).tolist() == [16, 16, 16, 16]
    assert np.all(np.isfinite(x1))


def test_accuracy_is_high(model):
    x, y = demo.make_waveforms(256, 12345)
    accuracy = np.mean(model(x).argmax(axis=1) == y)
    assert accuracy > 0.9


def test_stream_equals_whole_sequence(model):
    x, _ = demo.make_waveforms(4, 99)
    whole = model(x)
    stream = model.stream(batch_size=4)
    for _ in range(2):  # and again after reset
        for t in range(x.shape[1]):
            last = stream.step(x[:, t])
        np.testing.assert_allclose(last, whole, rtol=0, atol=1e-6)
        stream.reset()


def test_stream_prefixes_equal_shorter_sequences(model):
    x, _ = demo.make_waveforms(2, 5)
    stream = model.stream(batch_size=2)
    for t in range(x.shape[1]):
        out = stream.step(x[:, t])
        if t + 1 in (1, 10, 33):
            np.testing.assert_allclose(out, model(x[:, : t + 1]), rtol=0, atol=1e-6)


def test_run_demo_returns_numbers():
    out = io.StringIO()
    result = demo.run_demo(seed=0, count=4, out=out)
    expected = {"labels", "true", "predicted", "confidence", "accuracy", "accuracy_per_class",
                "accuracy_count", "latency_ms_batch1", "throughput_seq_per_s_batch512",
                "throughput_seq_per_s_batch512_1thread", "threads_batch512",
                "stream_step_us_batch1", "stream_max_abs_diff", "stream_matches"}
    assert expected <= set(result)
    assert len(result["true"]) == len(result["predicted"]) == len(result["confidence"]) == 4
    assert result["accuracy"] > 0.9
    assert result["stream_matches"]
    for key in ("latency_ms_batch1", "throughput_seq_per_s_batch512", "stream_step_us_batch1"):
        assert result[key] > 0
    text = out.getvalue()
    assert "accuracy" in text and "sequences/s" in text


def test_sparkline():
    line = demo.sparkline(np.sin(np.linspace(0, 2 * np.pi, 64)), 16)
    assert len(line) == 16
    assert set(line) <= set(demo._BARS)
    assert demo.sparkline(np.zeros(8), 8) == demo._BARS[0] * 8


def test_demo_prints_ascii_where_unicode_cannot_be_printed():
    class AsciiOut(io.StringIO):
        encoding = "ascii"

    out = AsciiOut()
    demo.run_demo(seed=1, count=2, out=out)
    out.getvalue().encode("ascii")
