"""Model and Stream on hand-built models: graph wiring, states, streaming."""

import threading

import numpy as np
import pytest
from conftest import random_gru_weights

from gru_infer import Model, Stream
from gru_infer.reference import gru_reference
from gru_infer.spec.graph import INPUT, Node
from gru_infer.spec.layers import Dense, Embedding, GRUCell, Identity, Masking, Recurrent


def cell(rng, input_size, hidden_size, **options):
    W, R, B = random_gru_weights(rng, input_size, hidden_size)
    return GRUCell(W, R, B, **options)


def seed_like_model(rng, features=6, h1=9, h2=5, outputs=2):
    return Model.sequential([
        Recurrent("gru", [cell(rng, features, h1)]),
        Identity("dropout"),
        Recurrent("gru_1", [cell(rng, h1, h2, linear_before_reset=False)]),
        Dense("head", rng.standard_normal((h2, outputs)).astype(np.float32),
              rng.standard_normal(outputs).astype(np.float32), "sigmoid"),
    ], input_shape=(None, features))


def test_chain_matches_the_reference_layer_by_layer(rng):
    model = seed_like_model(rng)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    y, states = model(x, return_state=True)
    c1, c2 = model.layer("gru").cells[0], model.layer("gru_1").cells[0]
    y1, h1 = gru_reference(x, c1.W, c1.R, c1.B)
    y2, h2 = gru_reference(y1, c2.W, c2.R, c2.B, linear_before_reset=False)
    head = model.layer("head")
    expected = 1 / (1 + np.exp(-(y2 @ head.kernel + head.bias)))
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(states[0], h1, atol=1e-5)
    np.testing.assert_allclose(states[1], h2, atol=1e-5)


def test_stream_steps_equal_the_whole_sequence(rng):
    model = seed_like_model(rng)
    x = rng.standard_normal((4, 10, 6)).astype(np.float32)
    whole = model(x)
    stream = model.stream(batch_size=4)
    steps = np.stack([stream.step(x[:, t]) for t in range(10)], axis=1)
    np.testing.assert_allclose(steps, whole, atol=1e-6)
    stream.reset()
    chunks = np.concatenate([stream.run(x[:, :3]), stream.run(x[:, 3:])], axis=1)
    np.testing.assert_allclose(chunks, whole, atol=1e-6)


def test_stream_reset_rows_and_state(rng):
    model = seed_like_model(rng)
    x = rng.standard_normal((3, 6, 6)).astype(np.float32)
    stream = model.stream(batch_size=3)
    stream.run(x)
    saved = stream.state
    stream.reset([1])
    assert np.all(stream.state[0][:, 1] == 0) and np.any(stream.state[0][:, 0] != 0)
    fresh = model(x[1:2, :2])
    np.testing.assert_allclose(stream.run(x[:, :2])[1:2], fresh, atol=1e-6)
    stream.state = saved
    np.testing.assert_array_equal(stream.state[1], saved[1])
    with pytest.raises(ValueError, match="state of GRU 'gru'"):
        stream.state = [np.zeros((1, 2, 9)), saved[1]]
    with pytest.raises(ValueError, match="batch_size 3"):
        stream.step(np.zeros((2, 6), np.float32))


def test_initial_states_continue_a_sequence(rng):
    model = seed_like_model(rng)
    x = rng.standard_normal((2, 8, 6)).astype(np.float32)
    whole = model(x)
    first, states = model(x[:, :5], return_state=True)
    second = model(x[:, 5:], initial_states=states)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, atol=1e-6)


def test_bidirectional_merge_modes_and_two_outputs(rng):
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    fwd, bwd = cell(rng, 3, 4), cell(rng, 3, 4)
    y_f, _ = gru_reference(x, fwd.W, fwd.R, fwd.B)
    y_b, _ = gru_reference(x, bwd.W, bwd.R, bwd.B, direction="reverse")
    expected = {"concat": np.concatenate([y_f, y_b], -1), "sum": y_f + y_b, "mul": y_f * y_b,
                "ave": (y_f + y_b) / 2}
    nodes = [Node(Recurrent(f"bi_{mode}", [fwd, bwd], merge_mode=mode), [(INPUT, 0)])
             for mode in expected]
    nodes.append(Node(Recurrent("bi_none", [fwd, bwd], merge_mode=None), [(INPUT, 0)]))
    outputs = [(f"bi_{mode}", 0) for mode in expected] + [("bi_none", 0), ("bi_none", 1)]
    model = Model(nodes, outputs, input_shape=(None, 3))
    got = model(x)
    for g, e in zip(got, list(expected.values()) + [y_f, y_b]):
        np.testing.assert_allclose(g, e, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be streamed"):
        model.stream()


def test_bidirectional_with_different_directions(rng):
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    fwd, bwd = cell(rng, 3, 4), cell(rng, 3, 2, linear_before_reset=False)
    layer = Recurrent("bi", [fwd, bwd])
    from gru_infer.runtime.ops import _engines

    assert len(_engines(layer)) == 2  # directions with different options: one core call each
    y = Model.sequential([layer], input_shape=(None, 3))(x)
    y_f, _ = gru_reference(x, fwd.W, fwd.R, fwd.B)
    y_b, _ = gru_reference(x, bwd.W, bwd.R, bwd.B, direction="reverse",
                           linear_before_reset=False)
    np.testing.assert_allclose(y, np.concatenate([y_f, y_b], -1), atol=1e-5)


def test_embedding_mask_zero_carries_state(rng):
    table = rng.standard_normal((10, 4)).astype(np.float32)
    c = cell(rng, 4, 5)
    model = Model.sequential([Embedding("emb", table, mask_zero=True),
                              Recurrent("gru", [c], return_sequences=True)],
                             input_shape=(None,), input_dtype="int32")
    ids = np.array([[3, 0, 4, 0], [0, 0, 2, 5]])
    y = model(ids)
    y_ref, _ = gru_reference(table[ids], c.W, c.R, c.B, mask=ids != 0)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_array_equal(y[0, 1], y[0, 0])  # masked step repeats the last output
    np.testing.assert_array_equal(y[1, :2], 0)  # zeros before the first valid step
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 9\]"):
        model(np.array([[1, 10]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(np.full((1, 2), 1.5, np.float32))
    np.testing.assert_array_equal(model(ids.astype(np.float32)), y)  # Keras 2 feeds float ids


def test_masking_layer_and_last_output(rng):
    c = cell(rng, 3, 4)
    model = Model.sequential([Masking("mask", 0.0), Recurrent("gru", [c], return_sequences=False)],
                             input_shape=(None, 3))
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    x[0, 4:] = 0
    x[1, 2] = 0
    y = model(x)
    y_ref, h_ref = gru_reference(x, c.W, c.R, c.B, mask=np.any(x != 0, -1))
    np.testing.assert_allclose(y, h_ref[0], atol=1e-5)


def test_lengths_give_pytorch_last_state(rng):
    c = cell(rng, 3, 4)
    model = Model.sequential([Recurrent("gru", [c], return_sequences=False)], input_shape=(None, 3))
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    y = model(x, lengths=[6, 2])
    _, h_ref = gru_reference(x, c.W, c.R, c.B, lengths=[6, 2])
    np.testing.assert_allclose(y, h_ref[0], atol=1e-5)


def test_bad_model_input_is_named(rng):
    model = seed_like_model(rng)
    with pytest.raises(ValueError, match=r"model input must have shape .* got \(2, 6\)"):
        model(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="got"):
        model(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="float features"):
        model(np.zeros((2, 3, 6), np.int64))
    with pytest.raises(ValueError, match="one state per GRU layer"):
        model(np.zeros((2, 3, 6), np.float32), initial_states=[np.zeros((1, 2, 9))])


def test_graph_checks_names_and_order(rng):
    dense = Dense("d", np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="not an input or an earlier layer"):
        Model([Node(dense, [("later", 0)])], [("d", 0)])
    with pytest.raises(ValueError, match="used twice"):
        Model.sequential([dense, Dense("d", np.ones((2, 2), np.float32))])


def test_two_threads_share_one_model(rng):
    model = seed_like_model(rng)
    inputs = [rng.standard_normal((3, 20, 6)).astype(np.float32) for _ in range(2)]
    expected = [model(x) for x in inputs]
    ok = []

    def work(i):
        ok.append(all(np.array_equal(model(inputs[i]), expected[i]) for _ in range(10)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ok == [True, True]


def test_summary_lists_layers(rng):
    text = seed_like_model(rng).summary()
    assert "gru_1" in text and "dense" in text and "parameters" in text


@pytest.mark.parametrize("activation", ["softmax", "tanh", "relu", "hard_sigmoid", "elu", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_step_plan_heads_match_whole_sequences(activation, dtype, bias, rng):
    """The preallocated step path (core activations, softmax, NumPy fallback)."""
    from gru_infer.spec.layers import Activation

    W, R, B = random_gru_weights(rng, 3, 6, dtype=dtype)
    model = Model.sequential([
        Recurrent("gru", [dict(W=W, R=R, B=B)]),
        Dense("head", rng.standard_normal((6, 4)).astype(dtype),
              rng.standard_normal(4).astype(dtype) if bias else None, activation),
        Activation("act", "sigmoid"),
    ], input_shape=(None, 3))
    x = rng.standard_normal((2, 5, 3)).astype(dtype)
    stream = model.stream(batch_size=2)
    out = np.empty((2, 4), dtype)
    steps = [stream.step(x[:, t], out=out).copy() for t in range(5)]
    assert steps[0].dtype == dtype
    np.testing.assert_allclose(np.stack(steps, 1), model(x), atol=1e-6)


def test_half_precision_and_empty_dense_layers(rng):
    """float16 weights compute in float32 (the core has no float16 path);
    a Dense with no units is refused when built, not when run."""
    kernel = rng.standard_normal((4, 3)).astype(np.float16)
    model = Model.sequential([Dense("d", kernel, None, "sigmoid")], input_shape=(None, 4))
    x = np.ones((1, 4), np.float16)
    y = model.stream(1).step(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-(x.astype(np.float32) @ kernel.astype(np.float32)))),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        Dense("d", np.ones((4, 0), np.float32))


def test_one_stream_shared_by_two_threads_stays_consistent(rng):
    """Calls on one stream are serialised: each thread's steps are whole.

    The inputs vary, and the model's output is its GRU state, so every output
    tells the state a step started from: the calls must line up as one serial
    order, which is rebuilt here step by step (a torn or lost step has no
    place in any order)."""
    W, R, B = random_gru_weights(rng, 4, 8)
    model = Model.sequential([Recurrent("gru", [dict(W=W[0], R=R[0], B=B[0])])],
                             input_shape=(None, 4))
    stream = model.stream(batch_size=2)
    steps = 150
    inputs = [rng.standard_normal((steps, 2, 4)).astype(np.float32) for _ in range(2)]
    outputs = [[], []]
    errors = []

    def work(i):
        try:
            for x in inputs[i]:
                outputs[i].append(stream.step(x))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    replay = model.stream(batch_size=2)
    state = np.zeros((1, 2, 8), np.float32)
    done = [0, 0]
    while done != [steps, steps]:
        for i in (0, 1):
            if done[i] == steps:
                continue
            replay.state = [state]
            if np.allclose(replay.step(inputs[i][done[i]]), outputs[i][done[i]], atol=1e-6):
                state = outputs[i][done[i]][None]
                done[i] += 1
                break
        else:
            raise AssertionError(f"after {done} steps, neither thread's next output follows "
                                 "from the state: a step was torn or lost")
    np.testing.assert_allclose(stream.state[0], state, atol=1e-6)


def test_eight_threads_share_one_model_on_varying_inputs(rng):
    """Different shapes and values from 8 threads at once give what a serial run gives."""
    model = seed_like_model(rng)
    inputs = [rng.standard_normal((1 + i % 3, 5 + i, 6)).astype(np.float32) for i in range(8)]
    expected = [model(x) for x in inputs]
    results = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        results[i] = all(np.array_equal(model(inputs[(i + k) % 8], num_threads=1 + k % 2),
                                        expected[(i + k) % 8]) for k in range(24))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8


@pytest.mark.parametrize("kind", ["embedding", "masking"])
def test_masked_chains_step_through_the_plan_like_the_general_path(kind, rng):
    """Embedding(mask_zero) and Masking chains stream through the preallocated
    plan; it must agree with the general code, masked steps included."""
    if kind == "embedding":
        first = Embedding("emb", rng.standard_normal((9, 4)).astype(np.float32), mask_zero=True)
        model = Model.sequential([first, Recurrent("gru", [cell(rng, 4, 5)]),
                                  Dense("d", rng.standard_normal((5, 2)).astype(np.float32))],
                                 input_shape=(None,), input_dtype="int32")
        xs = [np.array([3, 0]), np.array([0, 0]), np.array([5, 8]), np.array([0, 1])]
    else:
        model = Model.sequential([Masking("mask", 0.0), Recurrent("gru", [cell(rng, 3, 5)]),
                                  Recurrent("last", [cell(rng, 5, 4)], return_sequences=False)],
                                 input_shape=(None, 3))
        xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(4)]
        xs[1][0] = 0
        xs[2][:] = 0
    planned, general = model.stream(batch_size=2), model.stream(batch_size=2)
    for x in xs:  # the compiled fast path against the class's general step
        np.testing.assert_allclose(planned.step(x), Stream.step(general, x), atol=1e-6)
    for a, b in zip(planned.state, general.state):
        np.testing.assert_allclose(a, b, atol=1e-6)
    if kind == "embedding":
        with pytest.raises(ValueError, match=r"token ids must lie in \[0, 8\]"):
            planned.step(np.array([1, 9]))
        with pytest.raises(TypeError, match="integer token ids"):
            planned.step(np.array([1.5, 2.0]))


def test_plain_calls_after_calls_with_lengths_and_states(rng):
    """The fast path for repeated plain calls must not keep a previous call's
    lengths or initial states."""
    model = seed_like_model(rng)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    plain = model(x)
    np.testing.assert_array_equal(model(x), plain)
    with_lengths = model(x, lengths=[2, 5])
    assert not np.allclose(with_lengths, plain)
    np.testing.assert_array_equal(model(x), plain)
    h0 = [rng.standard_normal((1, 2, 9)).astype(np.float32), None]
    model(x, initial_states={"gru": h0[0]})
    np.testing.assert_array_equal(model(x), plain)
    np.testing.assert_array_equal(model(x.astype(np.float64)), plain)  # another dtype: checked path
