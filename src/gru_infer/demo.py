"""The bundled example: a small GRU that recognises waveforms.

A sequence of 64 samples of a noisy periodic signal (sine, square, triangle
or sawtooth, random frequency, phase, amplitude and offset) is read one
sample per step by GRU(32) -> GRU(32) -> Dense(4, softmax), which says which
waveform it is.  The model was trained with Keras 3 by
tools/train_example_model.py and converted with gru_infer.convert; the data
generator below is the one it was trained on.

    python -m gru_infer.demo [--seed N] [--count N]      (or: gru-infer demo)

This module imports only NumPy at the top, so the training script can load
the generator from a TensorFlow environment without gru_infer's C core.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

WAVEFORMS = ("sine", "square", "triangle", "sawtooth")
STEPS = 64
# The signal parameters the model was trained on (also written to the JSON sidecar).
SETTINGS = {
    "steps": STEPS,
    "cycles": [1.5, 6.0],  # periods per sequence, uniform
    "amplitude": [0.5, 1.5],  # uniform
    "offset": [-0.2, 0.2],  # uniform
    "noise_std": 0.1,  # Gaussian, per sample
}

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_FILE = "waveforms.safetensors"
INFO_FILE = "waveforms.json"


def make_waveforms(count: int, seed=None, *, steps: int = STEPS, cycles=None, amplitude=None,
                   offset=None, noise_std=None):
    """(x, labels): x (count, steps, 1) float32 signals, labels (count,) int64
    indices into WAVEFORMS, balanced and shuffled.  seed: an int, None or a
    numpy Generator.  Ranges default to SETTINGS."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cycles = SETTINGS["cycles"] if cycles is None else cycles
    amplitude = SETTINGS["amplitude"] if amplitude is None else amplitude
    offset = SETTINGS["offset"] if offset is None else offset
    noise_std = SETTINGS["noise_std"] if noise_std is None else noise_std

    labels = rng.permutation(np.arange(count) % len(WAVEFORMS)).astype(np.int64)
    freq = rng.uniform(*cycles, size=(count, 1))
    phase0 = rng.uniform(0.0, 1.0, size=(count, 1))
    amp = rng.uniform(*amplitude, size=(count, 1))
    shift = rng.uniform(*offset, size=(count, 1))
    noise = rng.standard_normal((count, steps)) * noise_std

    p = (freq * np.arange(steps) / steps + phase0) % 1.0  # phase in cycles, [0, 1)
    shapes = np.stack([
        np.sin(2 * np.pi * p),  # sine
        np.where(p < 0.5, 1.0, -1.0),  # square
        1.0 - 4.0 * np.abs(p - 0.5),  # triangle
        2.0 * p - 1.0,  # sawtooth (rising)
    ])  # (4, count, steps)
    wave = shapes[labels, np.arange(count)]
    x = amp * wave + shift + noise
    return x[..., None].astype(np.float32), labels


def load_model():
    """The bundled gru_infer model."""
    from gru_infer import load

    return load(DATA_DIR / MODEL_FILE)


def model_info() -> dict:
    """The JSON sidecar: labels, signal settings, accuracies, provenance."""
    with open(DATA_DIR / INFO_FILE, encoding="utf-8") as f:
        return json.load(f)


# -- display --------------------------------------------------------------------

_BARS = "▁▂▃▄▅▆▇█"
_ASCII_BARS = "_.-:=+*#"


def _can_print(out, text: str) -> bool:
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def sparkline(signal, width: int = 32, bars: str = _BARS) -> str:
    """The signal as a row of bar characters, width wide (averaged in bins)."""
    signal = np.asarray(signal, np.float64).ravel()
    width = max(1, min(width, signal.size))
    bins = np.array_split(signal, width)
    values = np.array([b.mean() for b in bins])
    low, high = values.min(), values.max()
    scaled = np.zeros(width) if high - low < 1e-12 else (values - low) / (high - low)
    index = np.minimum((scaled * len(bars)).astype(int), len(bars) - 1)
    return "".join(bars[i] for i in index)


def _median_seconds(fn, repeats: int, budget: float = 1.0, minimum: int = 3) -> float:
    """Median time of fn() over `repeats` calls, fewer (but at least `minimum`)
    once `budget` seconds are spent."""
    times = []
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if spent > budget and len(times) >= minimum:
            break
    return float(np.median(times))


# -- the demo -------------------------------------------------------------------


def run_demo(seed=None, count: int = 8, out=None) -> dict:
    """Classify `count` fresh waveforms and print a table, the accuracy on 512
    more, and timings (whole sequence at batch 1 and 512, one streaming step).
    Returns the numbers in a dict."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    out = sys.stdout if out is None else out
    fancy = _can_print(out, _BARS + "µ")
    bars, micro = (_BARS, "µs") if fancy else (_ASCII_BARS, "us")
    rng = np.random.default_rng(seed)
    model = load_model()
    info = model_info()
    labels = info.get("labels", list(WAVEFORMS))

    def say(text=""):
        print(text, file=out)

    say(f"gru_infer demo: waveform recognition, {STEPS} samples per sequence, "
        f"{model.parameter_count:,} parameters")
    say(f"  model: GRU(32) -> GRU(32) -> Dense(4, softmax), trained with Keras "
        f"{info.get('keras_version', '?')}, bundled as {MODEL_FILE} "
        f"({(DATA_DIR / MODEL_FILE).stat().st_size / 1024:.1f} KiB)")
    say()

    # -- a few examples
    x, y = make_waveforms(count, rng)
    probs = model(x)
    predicted = probs.argmax(axis=1)
    say(f"  {'signal':<32}  {'true':<9} {'predicted':<9} {'confidence':>10}")
    for i in range(count):
        mark = "" if predicted[i] == y[i] else "  <- wrong"
        say(f"  {sparkline(x[i, :, 0], 32, bars)}  {labels[y[i]]:<9} {labels[predicted[i]]:<9} "
            f"{probs[i, predicted[i]]:>9.1%}{mark}")
    say()

    # -- accuracy on a larger fresh batch
    big_x, big_y = make_waveforms(512, rng)
    big_probs = model(big_x)
    accuracy = float(np.mean(big_probs.argmax(axis=1) == big_y))
    per_class = {labels[c]: float(np.mean(big_probs[big_y == c].argmax(axis=1) == c))
                 for c in range(len(labels))}
    say(f"  accuracy on 512 fresh sequences: {accuracy:.1%}  ("
        + ", ".join(f"{k} {v:.0%}" for k, v in per_class.items()) + ")")

    # -- streaming: one sequence, one sample at a time, equals the whole-sequence call
    one = x[:1]
    stream = model.stream(batch_size=1, num_threads=1)
    steps_out = np.stack([stream.step(one[:, t]) for t in range(STEPS)], axis=1)  # (1, T, 4)
    whole = model(one, num_threads=1)
    stream_diff = float(np.max(np.abs(steps_out[:, -1] - whole)))
    checkpoints = [t for t in (8, 16, 32, STEPS) if t <= STEPS]
    guesses = "   ".join(f"{t}: {labels[int(steps_out[0, t - 1].argmax())]} "
                         f"{steps_out[0, t - 1].max():.0%}" for t in checkpoints)
    say(f"  streaming the first sequence ({labels[y[0]]}) one sample per step, "
        "model.stream().step():")
    say(f"    best guess after {guesses}")
    say(f"    after {STEPS} steps it {'equals' if stream_diff <= 1e-5 else 'DIFFERS FROM'} "
        f"the whole-sequence call (max abs difference {stream_diff:.1e})")
    say()

    # -- timings
    from gru_infer import get_num_threads

    x1 = big_x[:1]
    model(x1, num_threads=1)  # warm up
    latency = _median_seconds(lambda: model(x1, num_threads=1), 200, budget=0.5)
    threads = get_num_threads()  # the default: every core this process may use
    batch_time = _median_seconds(lambda: model(big_x), 5, budget=0.5, minimum=2)
    batch_time_1 = batch_time if threads == 1 else \
        _median_seconds(lambda: model(big_x, num_threads=1), 5, budget=0.5, minimum=2)
    stream.reset()
    sample = big_x[:1, :, :]
    step_times = []
    for i in range(320):
        x_t = sample[:, i % STEPS]
        start = time.perf_counter()
        stream.step(x_t)
        step_times.append(time.perf_counter() - start)
        if i % STEPS == STEPS - 1:
            stream.reset()
    step_latency = float(np.median(step_times[STEPS:]))  # first pass is warm-up
    say("  speed (median timings on this machine):")
    say(f"    {'whole sequence, batch 1, 1 thread:':<37}{latency * 1e3:8.3f} ms per call")
    for n, seconds in ([(1, batch_time_1)] if threads == 1 else
                       [(1, batch_time_1), (threads, batch_time)]):
        batch_label = f"whole sequence, batch 512, {n} thread{'s' if n != 1 else ''}:"
        say(f"    {batch_label:<37}{512 / seconds:>8,.0f} sequences/s")
    step_label = "streaming step, batch 1, 1 thread:"
    say(f"    {step_label:<37}{step_latency * 1e6:8.1f} {micro} per step")

    return {
        "labels": list(labels),
        "true": [labels[i] for i in y],
        "predicted": [labels[i] for i in predicted],
        "confidence": [float(probs[i, predicted[i]]) for i in range(count)],
        "accuracy": accuracy,
        "accuracy_per_class": per_class,
        "accuracy_count": 512,
        "latency_ms_batch1": latency * 1e3,
        "throughput_seq_per_s_batch512": 512 / batch_time,
        "threads_batch512": threads,
        "throughput_seq_per_s_batch512_1thread": 512 / batch_time_1,
        "stream_step_us_batch1": step_latency * 1e6,
        "stream_max_abs_diff": stream_diff,
        "stream_matches": stream_diff <= 1e-5,
    }


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gru_infer.demo", description=__doc__
                                     .splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="seed for the example signals")
    parser.add_argument("--count", type=int, default=8, help="examples in the table")
    args = parser.parse_args(argv)
    from gru_infer._console import run_command  # `| head` ends it quietly

    def body() -> int:
        run_demo(seed=args.seed, count=args.count)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
