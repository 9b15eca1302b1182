"""gru-infer on the command line: every command, flag and promise of cli.py."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gru_infer
from gru_infer import cli
from gru_infer.cli import build_parser, main

FIXTURES = Path(__file__).parent / "fixtures"
KERAS_ONE_OUTPUT = FIXTURES / "keras" / "masking_k3.keras"  # x (5, T, 3) -> (5, 2)
KERAS_TWO_OUTPUTS = FIXTURES / "keras" / "bidir_mask_k3.keras"  # token ids -> bi_seq, head
TORCH_ONE_LAYER = FIXTURES / "torch" / "gru_nobias.pt"


def _python_m(*args, **kwargs) -> subprocess.CompletedProcess:
    """`python -m gru_infer ARGS` in a fresh interpreter (the gru_infer under test)."""
    env = dict(os.environ)
    package_parent = str(Path(gru_infer.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_parent, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "gru_infer", *args], env=env, timeout=300,
                          **kwargs)


@pytest.fixture
def keras_model(tmp_path):
    """A converted one-output model and its input/expected output."""
    pytest.importorskip("h5py")
    path = tmp_path / "m.safetensors"
    assert main(["convert", str(KERAS_ONE_OUTPUT), str(path)]) == 0
    data = np.load(FIXTURES / "keras" / "masking_k3.npz")
    return path, data["x"], data["y"]


# -- the classic round trip --------------------------------------------------------------------


def test_convert_info_run(tmp_path, capsys, keras_model):
    path, x, y = keras_model
    out = capsys.readouterr().out
    assert "gru" in out and f"wrote {path} (" in out
    assert main(["info", str(path)]) == 0
    assert "parameters" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), y, atol=1e-5)


def test_torch_options_and_info(tmp_path, capsys):
    src = FIXTURES / "torch" / "seq_module.pt"
    assert main(["info", str(src)]) == 0
    out = capsys.readouterr().out
    assert "nn.GRU" in out and "converted with the default options" in out
    assert main(["info", str(src), "--head-on", "last_step"]) == 0
    assert "converted with --head-on last_step" in capsys.readouterr().out
    dst = tmp_path / "t.safetensors"
    assert main(["convert", str(src), str(dst), "--head-on", "last_step",
                 "--head-activation", "softmax"]) == 0
    assert "softmax" in capsys.readouterr().out


# -- version, python -m, --debug, help ---------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gru-infer {gru_infer.__version__}"


def test_python_m_gru_infer_is_the_cli():
    result = _python_m("--version", capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"gru-infer {gru_infer.__version__}"
    result = _python_m("--help", capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m gru_infer")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_anywhere_shows_the_traceback(tmp_path, capsys, where):
    missing = str(tmp_path / "missing.keras")
    argv = ["--debug", "info", missing] if where == "before" else ["info", missing, "--debug"]
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        main(argv)
    assert main(["info", missing]) == 1  # without it: one line
    assert capsys.readouterr().err.count("\n") == 1


def _all_parsers():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return [("gru-infer", parser)] + list(subparsers.choices.items())


@pytest.mark.parametrize("name, parser", _all_parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_argument_has_help_and_every_command_examples(name, parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            assert all(choice.help for choice in action._choices_actions)
            continue
        assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest}"
    assert "examples:" in (parser.epilog or "") and "gru-infer " in parser.epilog


# -- run: outputs as given, .npz in and out, atomic writes -------------------------------------


def test_run_writes_exactly_the_path_given(tmp_path, capsys, keras_model):
    path, x, y = keras_model
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "yout"
    assert main(["run", str(path), str(tmp_path / "x.npy"), str(out)]) == 0
    assert f"wrote {out}:" in capsys.readouterr().out
    assert out.exists() and not (tmp_path / "yout.npy").exists()
    np.testing.assert_allclose(np.load(out), y, atol=1e-5)  # an .npy file by content
    assert main(["run", str(path), str(tmp_path / "x.npy"), str(tmp_path / "one.npz")]) == 0
    with np.load(tmp_path / "one.npz") as npz:
        assert npz.files == ["dense"]  # named as `info` names the output


def test_run_several_outputs_go_to_one_npz_with_named_arrays(tmp_path, capsys):
    pytest.importorskip("h5py")
    data = np.load(FIXTURES / "keras" / "bidir_mask_k3.npz")
    np.save(tmp_path / "x.npy", data["x"])
    argv = ["run", str(KERAS_TWO_OUTPUTS), str(tmp_path / "x.npy")]
    assert main(argv + [str(tmp_path / "y.npy")]) == 1
    err = capsys.readouterr().err
    assert "2 outputs (bi_seq, head)" in err and ".npz" in err
    assert not (tmp_path / "y.npy").exists()
    assert main(argv + [str(tmp_path / "y.npz")]) == 0
    assert f"wrote {tmp_path / 'y.npz'}: bi_seq" in capsys.readouterr().out
    assert not (tmp_path / "y.npz.npz").exists()
    with np.load(tmp_path / "y.npz") as y:
        assert y.files == ["bi_seq", "head"]
        np.testing.assert_allclose(y["bi_seq"], data["y0"], atol=1e-5)
        np.testing.assert_allclose(y["head"], data["y1"], atol=1e-5)


def test_run_reads_npz_inputs(tmp_path, capsys, keras_model):
    path, x, y = keras_model
    run = ["run", str(path)]
    np.savez(tmp_path / "only.npz", anything=x)
    assert main(run + [str(tmp_path / "only.npz"), str(tmp_path / "a.npy")]) == 0
    np.savez(tmp_path / "named.npz", input_layer=x, other=np.zeros(3))  # by the input's name
    assert main(run + [str(tmp_path / "named.npz"), str(tmp_path / "b.npy")]) == 0
    np.savez(tmp_path / "two.npz", first=x, second=x[:1])
    assert main(run + [str(tmp_path / "two.npz"), str(tmp_path / "c.npy"), "--array", "second"]) == 0
    capsys.readouterr()
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), y, atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / "a.npy")[:1])
    assert main(run + [str(tmp_path / "two.npz"), str(tmp_path / "d.npy")]) == 1
    assert "several arrays (first, second): choose one with --array NAME" in capsys.readouterr().err
    assert main(run + [str(tmp_path / "two.npz"), str(tmp_path / "d.npy"), "--array", "x"]) == 1
    assert "holds no such array; it holds first, second" in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()


def test_npz_inputs_of_a_model_with_several_inputs(tmp_path):
    model = SimpleNamespace(inputs=[SimpleNamespace(name="audio"), SimpleNamespace(name="ids")])
    np.savez(tmp_path / "in.npz", ids=np.ones((1, 2)), audio=np.zeros((1, 2, 3)))
    arrays = cli.load_input(str(tmp_path / "in.npz"), model, None)
    assert sorted(arrays) == ["audio", "ids"] and arrays["audio"].shape == (1, 2, 3)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(cli.CommandError, match="takes 2 inputs \\(audio, ids\\): give an .npz"):
        cli.load_input(str(tmp_path / "one.npy"), model, None)


def test_run_refuses_a_non_array_input_in_its_own_words(tmp_path, capsys, keras_model):
    path, _, _ = keras_model
    (tmp_path / "x.txt").write_text("1 2 3")
    assert main(["run", str(path), str(tmp_path / "x.txt"), str(tmp_path / "y.npy")]) == 1
    assert "not a readable .npy or .npz file" in capsys.readouterr().err


def test_failed_writes_leave_nothing_behind_and_name_the_path(tmp_path, capsys, keras_model,
                                                               monkeypatch):
    path, x, _ = keras_model
    np.save(tmp_path / "x.npy", x)
    run = ["run", str(path), str(tmp_path / "x.npy")]
    before = sorted(os.listdir(tmp_path))
    (tmp_path / "adir").mkdir()
    assert main(run + [str(tmp_path / "adir")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"cannot write {tmp_path / 'adir'}: it is a folder")
    assert os.listdir(tmp_path / "adir") == []
    assert main(run + [str(tmp_path / "no" / "y.npy")]) == 1
    assert f"cannot write {tmp_path / 'no' / 'y.npy'}: there is no folder" in capsys.readouterr().err

    def half_a_write(file, *args, **kwargs):  # a full disk, half-way through
        file.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.np, "save", half_a_write)
    assert main(run + [str(tmp_path / "y.npy")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'y.npy'}: No space left on device" in err and ".tmp" not in err
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["adir"])  # no y.npy, no temporary
    (tmp_path / "y.npy").write_bytes(b"old")  # a failed write leaves an old output as it was
    assert main(run + [str(tmp_path / "y.npy")]) == 1
    assert (tmp_path / "y.npy").read_bytes() == b"old"


def test_convert_to_a_folder_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    assert main(["convert", str(TORCH_ONE_LAYER), str(tmp_path / "adir")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert os.listdir(tmp_path / "adir") == [] and sorted(os.listdir(tmp_path)) == ["adir"]


# -- pipes, terminals ------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly():
    """`gru-infer demo | head -3`: no traceback, the status a SIGPIPE'd tool has.
    The reader goes before the demo writes (as `| true` does), so every write
    after it meets the closed pipe, whatever the buffering."""
    process = subprocess.Popen([sys.executable, "-m", "gru_infer", "demo", "--seed", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                   [str(Path(gru_infer.__file__).parents[1]),
                                    os.environ.get("PYTHONPATH", "")])})
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 141
    assert stderr == b""


def test_progress_only_on_a_terminal():
    from gru_infer.bench import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        progress = _Progress(2, stream)
        progress("step")
        progress.close()
        assert ("\r" in stream.getvalue()) is shown


# -- info, bench ---------------------------------------------------------------------------


def test_info_is_an_aligned_table_with_input_and_output_shapes(tmp_path, capsys, keras_model):
    path, _, _ = keras_model
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    io_rows = lines[lines.index(next(line for line in lines if line.split() == ["name", "shape", "dtype"])):]
    assert io_rows[1].split()[:2] == ["input", "input_layer"] and io_rows[1].endswith("float32")
    assert "(batch, time, 3)" in io_rows[1]
    assert io_rows[2].split()[:2] == ["output", "dense"] and "(batch, 2)" in io_rows[2]
    column = io_rows[0].index("shape")
    assert all(row[column - 2:column] == "  " and row[column] == "(" for row in io_rows[1:])


def test_info_json(capsys, keras_model):
    path, _, _ = keras_model
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"] == [{"name": "input_layer", "shape": [None, None, 3], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "dense", "shape": [None, 2], "dtype": "float32"}]
    assert [layer["name"] for layer in info["layers"]] == ["masking", "gru", "gru_1", "dense"]
    assert info["parameters"] == 549 and info["format"] == "safetensors"


def test_info_system(capsys):
    assert main(["info", "--system"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("version") and gru_infer.__version__ in out and "default_threads" in out
    assert main(["info", "--system", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == gru_infer.__version__
    assert main(["info"]) == 1
    assert "a model file, or --system" in capsys.readouterr().err


def test_bench_runs_quickly_on_a_small_model(tmp_path, capsys):
    from gru_infer.bench import bench_model

    model = gru_infer.convert(TORCH_ONE_LAYER)
    results = bench_model(model, threads="1,2", batch_sizes="1,4", steps=5, seconds=0.01,
                          progress=None)
    assert set(results["threads"]) == {1, 2}
    row = results["threads"][2]
    assert row["stream_step_us"]["p50"] > 0 and set(row["throughput_seq_per_s"]) == {1, 4}
    assert "seq/s" in capsys.readouterr().out
    path = tmp_path / "m.safetensors"
    model.save(path)
    quick = ["bench", str(path), "--threads", "1", "--batch-sizes", "2", "--steps", "3",
             "--seconds", "0.01"]
    assert main(quick) == 0
    out = capsys.readouterr().out
    assert f"{path}: 1 layer, " in out and "sequences of 3 steps" in out  # not "1 layers"
    assert main(quick + ["--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["layers"] == 1 and figures["threads"]["1"]["sequence_ms"]["p50"] > 0


# -- errors ---------------------------------------------------------------------------------


def test_errors_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02 not really a pickle")
    assert main(["convert", str(junk), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gru-infer: error:") and "junk.pt" in err and err.count("\n") == 1
    assert main(["info", str(tmp_path / "missing.keras")]) == 1
    assert "missing.keras" in capsys.readouterr().err


def _state_dict_file(path, state):
    from safetensors.numpy import save_file

    save_file({k: np.asarray(v, np.float32) for k, v in state.items()}, str(path))
    return str(path)


def _gru(rng, prefix, input_size, hidden):
    return {f"{prefix}weight_ih_l0": rng.standard_normal((3 * hidden, input_size)),
            f"{prefix}weight_hh_l0": rng.standard_normal((3 * hidden, hidden))}


def test_errors_name_the_flags_the_user_types(tmp_path, capsys, rng):
    out = str(tmp_path / "o.safetensors")
    stacks = _state_dict_file(tmp_path / "stacks.safetensors",
                              _gru(rng, "enc.", 3, 4) | _gru(rng, "dec.", 4, 4))
    assert main(["convert", stacks, out]) == 1
    err = capsys.readouterr().err
    assert "--prefix" in err and "prefix=" not in err
    unused = _state_dict_file(tmp_path / "unused.safetensors",
                              _gru(rng, "", 3, 4) | {"norm.weight": np.ones(4)})
    assert main(["convert", unused, out]) == 1
    err = capsys.readouterr().err
    assert "--no-strict" in err and "strict=False" not in err and "--head PREFIX" in err
    assert main(["convert", unused, out, "--no-strict"]) == 0
    capsys.readouterr()
    assert main(["convert", stacks, out, "--prefix", "dec"]) == 0
    assert cli.in_cli_terms("pass hidden_activation= or head_activation='x', head_on, "
                            "batch_first=False") == \
        "pass --hidden-activation or --head-activation 'x', --head-on, --time-major"


def test_pytorch_flags_on_other_files_are_refused(capsys, keras_model):
    path, _, _ = keras_model
    capsys.readouterr()
    assert main(["info", str(path), "--head-activation", "softmax", "--time-major"]) == 1
    assert "--head-activation --time-major: for PyTorch checkpoints only, and" in \
        capsys.readouterr().err
    assert main(["info", str(KERAS_ONE_OUTPUT), "--no-strict"]) == 1
    assert "is a Keras file" in capsys.readouterr().err


def test_forward_option(tmp_path, capsys):
    src = FIXTURES / "torch" / "bigru2_linear_sd.pt"
    assert main(["info", str(src), "--forward", "gru,final_states,head"]) == 0
    out = capsys.readouterr().out
    assert "forward: ['gru', 'final_states', 'head']" in out and "(assumed" not in out


def test_warnings_are_one_line_in_flag_terms(capsys):
    import warnings

    src = FIXTURES / "torch" / "bigru2_linear_sd.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["info", str(src)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("gru-infer: warning: ") and err.count("\n") == 1
    assert "--forward gru," in err and "forward=" not in err


def test_time_major_shapes_put_the_batch_second(capsys):
    src = FIXTURES / "torch" / "gru_timemajor_h0.pt"
    assert main(["info", str(src), "--time-major", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["time_major"] and info["inputs"][0]["shape"][:2] == [None, None]
    assert main(["info", str(src), "--time-major"]) == 0
    out = capsys.readouterr().out
    assert "(time, batch, " in out.split("name")[-1]


def test_the_word_config_stays_a_word_in_cli_errors():
    """Only the keyword config= becomes the flag; "the model config" is prose."""
    assert cli.in_cli_terms("the model config is not valid JSON; pass the model's JSON config "
                            "(config=...), or put it at x.json") == (
        "the model config is not valid JSON; pass the model's JSON config (--config), "
        "or put it at x.json")
    assert cli.in_cli_terms("given as --config") == "given as --config"
