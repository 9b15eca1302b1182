"""The public Python API as a user meets it: import cost, types, docstrings,
reprs, out= checks, the thread count of the build."""

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gru_infer
from gru_infer import InputError

FIXTURES = Path(__file__).parent / "fixtures"
PUBLIC_FUNCTIONS = ["load", "convert", "from_torch", "show_config", "get_num_threads",
                    "set_num_threads"]
PUBLIC_CLASSES = ["GRU", "Model", "Stream"]


def _fresh(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_is_cheap_and_imports_neither_numpy_nor_scipy():
    out = _fresh("""
        import sys, time
        start = time.perf_counter()
        import gru_infer
        elapsed = time.perf_counter() - start
        print(elapsed, sorted(m for m in ("numpy", "scipy", "gru_infer.runtime._core")
                              if m in sys.modules))
    """)
    elapsed, loaded = out.split(maxsplit=1)
    assert loaded.strip() == "[]"
    assert float(elapsed) < 0.1  # measured: under 1 ms; 0.35 s before the names were lazy


def test_loading_a_model_does_not_import_scipy_running_it_does():
    path = Path(gru_infer.__file__).parent / "data" / "waveforms.safetensors"
    out = _fresh(f"""
        import sys
        import numpy as np
        import gru_infer
        model = gru_infer.load({str(path)!r})
        print("scipy" in sys.modules, "gru_infer.runtime._core" in sys.modules)
        model(np.zeros((1, 3, 1), np.float32))
        print("gru_infer.runtime._core" in sys.modules)
    """)
    assert out.split() == ["False", "False", "True"]


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS + PUBLIC_CLASSES)
def test_public_names_have_docstrings_and_type_hints(name):
    obj = getattr(gru_infer, name)
    assert inspect.getdoc(obj), name
    if inspect.isclass(obj):
        members = {k: v for k, v in vars(obj).items() if not k.startswith("_") or k == "__call__"}
        for member_name, member in members.items():
            function = member.fget if isinstance(member, property) else member
            function = getattr(function, "__func__", function)
            if not callable(function):
                continue
            assert inspect.getdoc(function), f"{name}.{member_name} has no docstring"
            assert function.__annotations__, f"{name}.{member_name} has no type hints"
    else:
        assert obj.__annotations__, f"{name} has no type hints"


def test_the_package_says_it_is_typed():
    assert (Path(gru_infer.__file__).parent / "py.typed").exists()


def test_reprs_say_what_a_thing_is():
    model = gru_infer.convert(FIXTURES / "torch" / "gru_nobias.pt")
    assert repr(model).startswith("<gru_infer.Model 1 layers, input ")
    stream = model.stream(batch_size=2)
    assert repr(stream).startswith("<gru_infer.Stream batch_size=2 of <gru_infer.Model")
    W = np.zeros((1, 6, 3), np.float32)
    R = np.zeros((1, 6, 2), np.float32)
    assert repr(gru_infer.GRU(W, R)).startswith("GRU(input_size=3, hidden_size=2")


@pytest.mark.parametrize("value", [b"model.pt", bytearray(b"x"), 42, None, ["a.pt"]])
def test_wrong_types_give_a_clear_type_error(value):
    kind = type(value).__name__
    with pytest.raises(gru_infer.InputError, match=f"convert takes a file path .*got {kind}"):
        gru_infer.convert(value)
    with pytest.raises(gru_infer.InputError, match=f"load takes a file path .*got {kind}"):
        gru_infer.load(value)
    if isinstance(value, (bytes, bytearray)):
        with pytest.raises(TypeError, match="write it to a file first"):
            gru_infer.convert(value)


def test_thread_counts_of_the_wrong_type_are_type_errors():
    for bad in ("2", 2.0, True):
        with pytest.raises(TypeError, match="num_threads must be a positive int"):
            gru_infer.set_num_threads(bad)
    with pytest.raises(InputError, match="positive"):
        gru_infer.set_num_threads(0)


def test_a_warm_call_checks_num_threads_as_a_cold_one_does(rng):
    """The repeat-call fast path stands for checks made once: a thread count of the
    wrong type is refused after a good call with an equal value too."""
    from test_model import seed_like_model

    model = seed_like_model(rng)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    model(x, num_threads=1)
    for bad in (True, 1.0):
        with pytest.raises(TypeError, match="num_threads must be a positive int"):
            model(x, num_threads=bad)


def _streams():
    """Streams of a model with one output and of one with two."""
    from gru_infer import Model
    from gru_infer.spec.graph import INPUT, Input, ModelSpec, Node
    from gru_infer.spec.layers import Dense, Recurrent

    rng = np.random.default_rng(0)
    cell = dict(W=rng.standard_normal((6, 3)).astype(np.float32),
                R=rng.standard_normal((6, 2)).astype(np.float32), B=None)
    one = Model.sequential([Recurrent("gru", [cell])], input_shape=(None, 3))
    dense = Dense("head", rng.standard_normal((2, 4)).astype(np.float32))
    two = Model(ModelSpec((Input(INPUT, (None, 3)),),
                          (Node(Recurrent("gru", [cell]), ((INPUT, 0),)),
                           Node(dense, (("gru", 0),))),
                          (("gru", 0), ("head", 0))))
    return one.stream(batch_size=2), two.stream(batch_size=2)


def test_out_is_checked_for_shape_and_dtype_on_every_step_path():
    one, two = _streams()
    x = np.ones((2, 3), np.float32)
    good = np.empty((2, 2), np.float32)
    assert one.step(x, out=good) is good
    for bad in (np.empty((2, 3), np.float32), np.empty((2, 2), np.float64),
                np.empty((2, 4), np.float32)[:, ::2], [good]):
        with pytest.raises(InputError, match="out must be"):
            one.step(x, out=bad)
    outs = [np.empty((2, 2), np.float32), np.empty((2, 4), np.float32)]
    assert two.step(x, out=outs) is outs
    np.testing.assert_allclose(outs[1], outs[0] @ two.model.layer("head").kernel, rtol=1e-6)
    general_step = type(two).step  # the Python path (models with several inputs take it)
    assert general_step(two, x, out=outs) is outs
    for step in (two.step, lambda x, out: general_step(two, x, out=out)):
        for bad in ([outs[0]], [outs[0], np.empty((2, 4), np.float64)],
                    [outs[0], np.empty((2, 2), np.float32)], outs[0]):
            with pytest.raises(InputError, match="out must"):
                step(x, out=bad)


def test_a_build_without_threads_reports_one_thread(monkeypatch):
    from gru_infer import config
    from gru_infer.runtime import _core

    gru_infer.set_num_threads(2)
    try:
        assert gru_infer.get_num_threads() == (2 if _core.has_threads() else 1)
        monkeypatch.setattr(_core, "has_threads", lambda: False)
        assert gru_infer.get_num_threads() == 1
        info = config.config()
        assert info["threads"] == "none (one thread)" and info["default_threads"] == 1
    finally:
        gru_infer.set_num_threads(None)


def test_type_checkers_see_every_public_name():
    """The lazy names are also imported under TYPE_CHECKING, so mypy and
    pyright see gru_infer.load & co. as they are, not as Any."""
    import ast

    tree = ast.parse(Path(gru_infer.__file__).read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING")
    seen = {alias.name for node in guarded.body for alias in node.names}
    assert seen == set(gru_infer._EXPORTS)
