"""Property tests of the public API: whatever the arguments, a call returns a
result of the documented shape or raises an error of gru_infer's family
(InputError for arguments, FormatError for files): never another exception
type, never a crash.  Examples are bounded so the suite stays quick."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gru_infer
from gru_infer import Model
from gru_infer.errors import FormatError, GruInferError, InputError
from gru_infer.spec.layers import Dense, Embedding, Recurrent

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
TORCH = os.path.join(os.path.dirname(__file__), "fixtures", "torch")

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int32, np.int64,
                          np.uint8, np.bool_, np.complex64, object])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


def _model():
    rng = np.random.default_rng(0)
    return Model.sequential([
        Recurrent("gru", [dict(W=rng.standard_normal((12, 3)).astype(np.float32),
                               R=rng.standard_normal((12, 4)).astype(np.float32),
                               B=rng.standard_normal(24).astype(np.float32))]),
        Dense("head", rng.standard_normal((4, 2)).astype(np.float32), None, "softmax"),
    ], input_shape=(None, 3))


def _token_model():
    rng = np.random.default_rng(1)
    return Model.sequential([
        Embedding("emb", rng.standard_normal((10, 3)).astype(np.float32)),
        Recurrent("gru", [dict(W=rng.standard_normal((12, 3)).astype(np.float32),
                               R=rng.standard_normal((12, 4)).astype(np.float32))]),
    ], input_shape=(None,), input_dtype="int64")


MODEL, TOKENS = _model(), _token_model()


def _array(shape, dtype, data):
    if dtype is object:
        return np.empty(shape, object)
    values = data.draw(st.sampled_from([0, 1, -1, 0.5, 1e30, -7, 9, 10, np.nan]))
    with np.errstate(all="ignore"):
        return np.full(shape, values).astype(dtype)


@FAST
@given(shape=SHAPES, dtype=DTYPES, threads=st.one_of(st.none(), st.integers(-3, 2**40)),
       data=st.data())
def test_model_call_returns_or_refuses(shape, dtype, threads, data):
    x = _array(shape, dtype, data)
    try:
        y = MODEL(x, num_threads=threads)
    except GruInferError:
        return
    assert y.shape == x.shape[:2] + (2,)


@FAST
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_token_ids_are_checked_on_every_path(shape, dtype, data):
    x = _array(shape, dtype, data)
    for call in (lambda: TOKENS(x), lambda: TOKENS.stream(max(1, shape[0] if shape else 1)).step(
            x[:, 0] if x.ndim >= 2 and x.shape[1] else x)):
        try:
            call()
        except GruInferError:
            continue
        ids = np.asarray(x)
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() <= 9)  # accepted ids lie in range


@FAST
@given(out_shape=SHAPES, out_dtype=DTYPES, batch=st.integers(1, 3))
def test_stream_out_is_checked(out_shape, out_dtype, batch):
    stream = MODEL.stream(batch)
    x = np.ones((batch, 3), np.float32)
    out = np.empty(out_shape, out_dtype)
    try:
        result = stream.step(x, out=out)
    except InputError:
        assert out.shape != (batch, 2) or out.dtype != np.float32 or not out.flags.c_contiguous
        return
    assert result is out and out.shape == (batch, 2) and out.dtype == np.float32


@FAST
@given(states=st.one_of(SHAPES.map(lambda s: np.zeros(s, np.float32)),
                        st.lists(SHAPES.map(lambda s: np.zeros(s)), max_size=3),
                        st.dictionaries(st.sampled_from(["gru", "other"]), st.just(np.zeros((1, 1, 4))))),
       lengths=st.one_of(st.none(), st.lists(st.integers(-2, 9), max_size=3)))
def test_initial_states_and_lengths_are_checked(states, lengths):
    x = np.ones((1, 4, 3), np.float32)
    try:
        MODEL(x, initial_states=states, lengths=lengths)
    except GruInferError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=512), name=st.sampled_from(["x.pt", "x.keras", "x.h5",
                                                          "x.safetensors", "x.bin"]))
def test_any_bytes_are_read_or_refused(tmp_path_factory, data, name):
    path = str(tmp_path_factory.mktemp("bytes") / name)
    with open(path, "wb") as f:
        f.write(data)
    for read in (gru_infer.convert, gru_infer.load):
        with pytest.raises(GruInferError):
            read(path)


@pytest.fixture(scope="module")
def weight_file_bytes(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("weights") / "m.safetensors")
    gru_infer.convert(os.path.join(TORCH, "gru_nobias.pt")).save(path)
    with open(path, "rb") as f:
        return f.read()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_damaged_weight_files_load_and_run_or_are_refused(tmp_path_factory, weight_file_bytes,
                                                          edits, cut):
    data = bytearray(weight_file_bytes)
    for at, value in edits:
        data[at % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    path = str(tmp_path_factory.mktemp("damaged") / "m.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    try:
        model = gru_infer.load(path)
    except FormatError:
        return
    model(np.ones((1, 3, model.input_shape[-1]), np.float32))  # what loads also runs
