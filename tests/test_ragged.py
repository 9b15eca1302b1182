"""Inputs as distributed workers get them: read-only arrays, strided slices,
and ragged batches (predict_ragged) give the numbers of writable, padded or
one-by-one runs."""

import warnings
from pathlib import Path

import numpy as np
import pytest

import gru_infer
from gru_infer.errors import InputError, InputTypeError
from gru_infer.runtime.ragged import lengths_refusal, plan_batches, sequence_outputs

FIXTURES = Path(__file__).parent / "fixtures"

TORCH = ["bigru2_linear_sd.pt", "packed.pt", "gru_timemajor_h0.pt", "seq_module.pt", "float64.pt"]
KERAS = ["masking_k3.keras", "masking_tf2.h5", "embedding_k3.keras", "bidir_mask_k3.keras",
         "bidir_modes_k3.keras", "func_masking_k3.keras", "go_backwards_k3.keras",
         "seed_k3.keras", "act_func_k3.keras", "hard_sigmoid_tf2.h5"]
# Around the GRUs: a decoder after RepeatVector (lengths= would cut it), causal and
# non-causal convolutions, pooling over time, normalisation, graphs.
LAYERS = ["autoencoder_k3.keras", "cnn_causal_tf2.h5", "cnn_same_k3.keras",
          "pooling_masked_k3.keras", "layernorm_k3.keras", "batchnorm_tf2.h5"]
GRAPHS = ["rnnoise_k3.keras", "multi_depth_tf2.h5"]
MODELS = ([f"torch/{n}" for n in TORCH] + [f"keras/{n}" for n in KERAS]
          + [f"keras_layers/{n}" for n in LAYERS] + [f"keras_graph/{n}" for n in GRAPHS])


def _load(name):
    if name.startswith("keras"):
        pytest.importorskip("h5py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gru_infer.convert(FIXTURES / name)


def _sequences(model, rng, count, max_len=9, min_len=0):
    """Random sequences for model's input, some with masked (all-zero) steps
    inside, and zero-length ones when min_len is 0."""
    spec_input = model.inputs[0]
    lengths = rng.integers(min_len, max_len + 1, count)
    lengths[0] = max_len
    if spec_input.token_ids:
        vocab = next(layer for layer in model.layers if layer.kind == "embedding").table.shape[0]
        return [rng.integers(0, vocab, (n,)) for n in lengths]
    features = spec_input.shape[1] or 3
    seqs = [rng.standard_normal((n, features)).astype(model.dtype) for n in lengths]
    for seq in seqs[1::3]:
        seq[len(seq) // 2:len(seq) // 2 + 1] = 0  # a Keras-masked step mid-sequence
    return seqs


def _alone(model, seq):
    """Every output of model for one sequence run as a batch of one."""
    x = seq[:, None] if model.time_major else seq[None]
    ys = model(x)
    ys = ys if isinstance(ys, list) else [ys]
    if model.time_major:
        ys = [y.swapaxes(0, 1) if y.ndim >= 3 else y for y in ys]
    return [y[0] for y in ys]


def _per_output(model, result):
    return result if len(model.outputs) > 1 else [result]


@pytest.mark.parametrize("name", MODELS)
def test_ragged_outputs_are_those_of_each_sequence_run_alone(name):
    model = _load(name)
    seqs = _sequences(model, np.random.default_rng(5), 41)
    got = _per_output(model, model.predict_ragged(seqs, batch_size=8))
    for i, seq in enumerate(seqs):
        for k, expected in enumerate(_alone(model, seq)):
            # Same function; the last bit may differ because the core's kernels
            # round differently at different batch sizes (as BLAS does).
            assert got[k][i].shape == expected.shape, (i, k)
            np.testing.assert_allclose(got[k][i], expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["torch/bigru2_linear_sd.pt", "keras/masking_k3.keras",
                                  "keras/go_backwards_k3.keras", "torch/gru_timemajor_h0.pt",
                                  "keras/embedding_k3.keras"])
@pytest.mark.parametrize("strategy", ["auto", "bucket"])
def test_ragged_batches_of_one_are_bit_for_bit_the_single_runs(name, strategy):
    model = _load(name)
    seqs = _sequences(model, np.random.default_rng(6), 12, min_len=1)
    got = _per_output(model, model.predict_ragged(seqs, batch_size=1, strategy=strategy))
    for i, seq in enumerate(seqs):
        for k, expected in enumerate(_alone(model, seq)):
            np.testing.assert_array_equal(got[k][i], expected)


@pytest.mark.parametrize("name", ["torch/bigru2_linear_sd.pt", "keras/masking_k3.keras",
                                  "keras/bidir_mask_k3.keras", "torch/seq_module.pt"])
def test_a_ragged_batch_is_bit_for_bit_the_same_padded_batch_with_lengths(name):
    model = _load(name)
    assert lengths_refusal(model.spec) is None
    seqs = _sequences(model, np.random.default_rng(7), 16, min_len=1)
    lengths = np.array([len(s) for s in seqs])
    order = np.argsort(-lengths, kind="stable")  # the order predict_ragged packs in
    x = np.zeros((len(seqs), lengths.max()) + seqs[0].shape[1:], seqs[0].dtype)
    for row, i in enumerate(order):
        x[row, :lengths[i]] = seqs[i]
    padded = _per_output(model, model(x, lengths=lengths[order]))
    got = _per_output(model, model.predict_ragged(seqs, batch_size=len(seqs)))
    for k, timed in enumerate(sequence_outputs(model.spec)):
        for row, i in enumerate(order):
            expected = padded[k][row, :lengths[i]] if timed else padded[k][row]
            np.testing.assert_array_equal(got[k][i], expected)


def test_padding_without_lengths_would_change_a_last_step_output():
    """What the packing guards against: Keras models see padding as data."""
    model = _load("keras/act_func_k3.keras")  # GRU returning its last output
    assert sequence_outputs(model.spec) == [False]
    rng = np.random.default_rng(8)
    short = rng.standard_normal((3, model.input_shape[1])).astype(np.float32)
    padded = np.zeros((1, 7, short.shape[1]), np.float32)
    padded[0, :3] = short
    alone = model(short[None])[0]
    assert np.abs(model(padded)[0] - alone).max() > 1e-3
    np.testing.assert_allclose(model.predict_ragged([short, padded[0]])[0], alone,
                               rtol=2e-5, atol=2e-6)


def test_read_only_object_arrays_and_strided_sequences():
    model = _load("torch/bigru2_linear_sd.pt")
    rng = np.random.default_rng(9)
    base = rng.standard_normal((6, 20, 10)).astype(np.float32)
    seqs = [base[i, : 3 + 2 * i : 1, ::2] for i in range(6)]  # every other feature: strided
    for s in seqs:
        assert not s.flags.c_contiguous
    frozen = np.empty(len(seqs), object)
    for i, s in enumerate(seqs):
        c = s.copy()
        c.flags.writeable = False
        frozen[i] = c
    expected = model.predict_ragged([np.ascontiguousarray(s) for s in seqs])
    for given in (seqs, frozen, tuple(seqs)):
        got = model.predict_ragged(given)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_padded_result_and_lengths():
    model = _load("torch/bigru2_linear_sd.pt")
    seqs = _sequences(model, np.random.default_rng(10), 9)
    listed = model.predict_ragged(seqs, batch_size=4)
    padded, lengths = model.predict_ragged(seqs, batch_size=4, padded=True)
    assert padded.shape == (9, max(len(s) for s in seqs), 3)
    np.testing.assert_array_equal(lengths, [len(s) for s in seqs])
    for i, y in enumerate(listed):
        np.testing.assert_array_equal(padded[i, :lengths[i]], y)
        assert not padded[i, lengths[i]:].any()


def test_a_regular_array_is_read_as_sequences_of_one_length():
    model = _load("torch/bigru2_linear_sd.pt")
    x = np.random.default_rng(11).standard_normal((10, 6, 5)).astype(np.float32)
    got = model.predict_ragged(x, batch_size=10)
    np.testing.assert_array_equal(np.stack(got), model(x))


def test_the_bucket_packing_never_mixes_lengths():
    lengths = np.array([3, 5, 3, 3, 5, 1, 3, 0])
    batches = plan_batches(lengths, 2, "bucket")
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    assert all(len(set(lengths[b])) == 1 and len(b) <= 2 for b in batches)
    by_length = plan_batches(lengths, 3, "lengths")
    assert [len(b) for b in by_length] == [3, 3, 2]
    assert lengths[np.concatenate(by_length)].tolist() == sorted(lengths.tolist(), reverse=True)


@pytest.mark.parametrize("name, why", [
    ("keras/go_backwards_k3.keras", "go_backwards"),  # a backwards GRU returning sequences
    ("keras_layers/autoencoder_k3.keras", "not the input's time"),  # a GRU after RepeatVector
    ("keras_layers/cnn_same_k3.keras", "not causal"),
    ("keras_layers/pooling_masked_k3.keras", "across time"),
])
def test_models_where_padding_is_not_exact_are_bucketed(name, why):
    model = _load(name)
    assert why in lengths_refusal(model.spec)
    with pytest.raises(InputError, match="not exact"):
        model.predict_ragged([np.zeros((2, model.input_shape[1]), np.float32)],
                             strategy="lengths")


def test_ragged_refusals_name_the_sequence():
    model = _load("torch/bigru2_linear_sd.pt")
    good = np.zeros((4, 5), np.float32)
    with pytest.raises(InputError, match=r"sequence 1 has shape \(4, 6\)"):
        model.predict_ragged([good, np.zeros((4, 6), np.float32)])
    with pytest.raises(InputError, match="sequence 2 has shape"):
        model.predict_ragged([good, good, np.zeros(4, np.float32)])
    with pytest.raises(InputTypeError):
        model.predict_ragged([good.astype(np.int32)])
    with pytest.raises(InputError, match="batch_size"):
        model.predict_ragged([good], batch_size=0)
    with pytest.raises(InputError, match="strategy"):
        model.predict_ragged([good], strategy="pad")
    with pytest.raises(InputError, match="list or an array"):
        model.predict_ragged("abc")
    assert model.predict_ragged([]) == []


# -- read-only and strided inputs through the plain call and the stream ---------------------


@pytest.mark.parametrize("name", ["torch/bigru2_linear_sd.pt", "keras/masking_k3.keras",
                                  "torch/gru_timemajor_h0.pt"])
def test_read_only_and_strided_inputs_give_identical_numbers(name):
    model = _load(name)
    rng = np.random.default_rng(12)
    features = model.input_shape[1]
    big = rng.standard_normal((8, 14, 2 * features)).astype(np.float32)
    big[:, 3] = 0  # a masked step for Keras Masking models
    strided = big[::2, ::2, ::2]  # batch, time and features all strided
    frozen = strided.copy()
    frozen.flags.writeable = False
    reference = model(np.ascontiguousarray(strided))
    for x in (strided, frozen, np.asfortranarray(strided)):
        np.testing.assert_array_equal(model(x), reference)
    lengths = np.array([7, 3, 1, 5])
    lengths.flags.writeable = False
    np.testing.assert_array_equal(model(frozen, lengths=lengths),
                                  model(np.ascontiguousarray(strided), lengths=lengths.copy()))


def test_a_stream_takes_read_only_and_strided_steps():
    model = _load("torch/seq_module.pt")
    rng = np.random.default_rng(13)
    features = model.input_shape[1]
    steps = rng.standard_normal((5, 2, 2 * features)).astype(np.float32)[:, :, ::2]
    plain, frozen = model.stream(batch_size=2), model.stream(batch_size=2)
    for x_t in steps:
        ro = x_t.copy()
        ro.flags.writeable = False
        np.testing.assert_array_equal(frozen.step(ro), plain.step(np.ascontiguousarray(x_t)))
