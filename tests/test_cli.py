"""gru-infer on the command line: convert, info, run; one-line errors."""

from pathlib import Path

import numpy as np
import pytest

from gru_infer.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_convert_info_run(tmp_path, capsys):
    pytest.importorskip("h5py")
    src = FIXTURES / "keras" / "masking_k3.keras"
    dst = tmp_path / "m.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "gru" in capsys.readouterr().out
    assert main(["info", str(dst)]) == 0
    assert "parameters" in capsys.readouterr().out
    data = np.load(FIXTURES / "keras" / "masking_k3.npz")
    np.save(tmp_path / "x.npy", data["x"])
    assert main(["run", str(dst), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), data["y"], atol=1e-5)


def test_torch_options_and_info(tmp_path, capsys):
    src = FIXTURES / "torch" / "seq_module.pt"
    assert main(["info", str(src)]) == 0
    assert "nn.GRU" in capsys.readouterr().out
    dst = tmp_path / "t.safetensors"
    assert main(["convert", str(src), str(dst), "--head-on", "last_step",
                 "--head-activation", "softmax"]) == 0
    assert "softmax" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02 not really a pickle")
    assert main(["convert", str(junk), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gru-infer: error:") and "junk.pt" in err and err.count("\n") == 1
    assert main(["info", str(tmp_path / "missing.keras")]) == 1
    assert "missing.keras" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        main(["--debug", "info", str(tmp_path / "missing.keras")])


def test_bench_runs_quickly_on_a_small_model(tmp_path, capsys):
    import gru_infer
    from gru_infer.bench import bench_model

    model = gru_infer.convert(FIXTURES / "torch" / "gru_nobias.pt")
    results = bench_model(model, threads="1,2", batch_sizes="1,4", steps=5, seconds=0.01,
                          progress=None)
    assert set(results["threads"]) == {1, 2}
    row = results["threads"][2]
    assert row["stream_step_us"]["p50"] > 0 and set(row["throughput_seq_per_s"]) == {1, 4}
    assert "seq/s" in capsys.readouterr().out
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert main(["bench", str(path), "--threads", "1", "--batch-sizes", "2", "--steps", "3",
                 "--seconds", "0.01"]) == 0


def test_forward_option(tmp_path, capsys):
    src = FIXTURES / "torch" / "bigru2_linear_sd.pt"
    assert main(["info", str(src), "--forward", "gru,final_states,head"]) == 0
    out = capsys.readouterr().out
    assert "forward: ['gru', 'final_states', 'head']" in out and "(assumed" not in out
