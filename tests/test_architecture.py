"""How the package hangs together: imports flow one way, the description
layer needs no compiled code, and a Model travels by value."""

import ast
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gru_infer

PACKAGE = Path(gru_infer.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict:
    """module -> the gru_infer modules it imports anywhere (function bodies too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules.update({_module_name(p): p for p in PACKAGE.rglob("*.pyx")
                    if _module_name(p) not in modules})
    graph = {}
    for name, path in modules.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        found = set()
        source = path.read_text()
        if path.suffix == ".pyx":  # Cython: only its Python-level imports matter here
            source = "\n".join(line for line in source.splitlines()
                               if line.startswith(("import ", "from ")) and " cimport " not in line)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in modules else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()

    def reaches(start, target, seen):
        for nxt in graph[start]:
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, target, seen):
                    return True
        return False

    cycles = [m for m in graph if reaches(m, m, set())]
    assert not cycles, f"import cycles through {sorted(cycles)}"


@pytest.mark.parametrize("layer, forbidden", [
    ("gru_infer.spec", ("gru_infer.runtime", "gru_infer.converters", "gru_infer.api")),
    ("gru_infer.converters", ("gru_infer.runtime", "gru_infer.api")),
    ("gru_infer.runtime", ("gru_infer.converters", "gru_infer.api")),
])
def test_imports_flow_one_way(layer, forbidden):
    bad = {(m, i) for m, imports in _imports().items() if m == layer or m.startswith(layer + ".")
           for i in imports if i.startswith(forbidden)}
    assert not bad, bad


def _run_without_core(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter where the compiled core cannot be imported."""
    blocker = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "gru_infer.runtime._core":
                    raise ImportError("blocked for this test")
                return None
        sys.meta_path.insert(0, Block())
    """)
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_convert_and_save_work_without_the_compiled_core(tmp_path):
    pytest.importorskip("h5py")
    result = _run_without_core(f"""
        import gru_infer
        for src in ({str(FIXTURES / 'keras' / 'masking_k3.keras')!r},
                    {str(FIXTURES / 'torch' / 'bigru2_linear_sd.pt')!r}):
            model = gru_infer.convert(src)
            model.save({str(tmp_path)!r} + "/m.safetensors")
            print(model.summary().splitlines()[0])
            loaded = gru_infer.load({str(tmp_path)!r} + "/m.safetensors")
            assert loaded.parameter_count == model.parameter_count
        assert "gru_infer.runtime._core" not in sys.modules
        try:
            import numpy as np
            model(np.zeros((1, 2) + tuple(s or 1 for s in model.input_shape[1:]), np.float32))
        except gru_infer.CoreUnavailableError as error:
            print("refused:", error)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("gru_infer model") == 2
    assert "refused: the compiled core of gru_infer cannot be loaded here" in result.stdout


def test_a_pickled_model_runs_the_same_in_another_process(tmp_path):
    model = gru_infer.convert(FIXTURES / "torch" / "bigru2_linear_sd.pt")
    x = np.random.default_rng(3).standard_normal((3, 7, 5)).astype(np.float32)
    expected = model(x)
    blob = pickle.dumps(model, protocol=5)
    weight_file = tmp_path / "m.safetensors"
    model.save(weight_file)
    assert len(blob) <= 1.1 * weight_file.stat().st_size
    (tmp_path / "model.pkl").write_bytes(blob)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import pickle, numpy as np
        model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, "rb").read())
        np.save({str(tmp_path / 'y.npy')!r}, model(np.load({str(tmp_path / 'x.npy')!r})))
    """)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_a_stream_refuses_to_pickle():
    model = gru_infer.convert(FIXTURES / "torch" / "gru_nobias.pt")
    with pytest.raises(TypeError, match="live state"):
        pickle.dumps(model.stream())
