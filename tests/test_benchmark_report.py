"""The benchmark's README table: built from a results document, written only between its markers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.report import readme_summary  # noqa: E402
from benchmarks.run import README_MARKERS, write_readme_table  # noqa: E402


def result(workload, engine, p50_us, title="model M"):
    return {"workload": workload, "engine": engine, "threads": 1, "title": title,
            "p50_ns": p50_us * 1e3, "p99_ns": 2 * p50_us * 1e3, "min_ns": p50_us * 1e3}


DOC = {"command": "python -m benchmarks.run --threads 1 --readme", "started": "2026-12-01T14:00:00",
       "machine": {"cpu": "Test CPU 9000", "cores": 2, "cpu_details": "avx512f"},
       "runs": [{"threads": 1, "results": [result("W1", "gru_infer", 20.0),
                                           result("W1", "onnxruntime", 30.0),
                                           result("W1", "numpy_ref", 900.0),
                                           result("W1", "gru_infer_bf16", 10.0)]}]}


def test_the_summary_names_the_cpu_and_gives_ratios_beside_the_peers_only():
    text = readme_summary(DOC)
    assert "Test CPU 9000" in text and "avx512f" in text and "2026-12-01" in text
    latency = text.split("Reduced-precision")[0]
    assert "| gru_infer | onnxruntime |" in latency
    assert "numpy_ref" not in latency and "bf16" not in latency
    assert "| W1 [µs] | 1 | 20 | 10 |" in text  # the precision table, with the bf16 row
    assert "20 / 40" in text and "30 / 60 (×1.50)" in text


def test_the_table_replaces_only_what_lies_between_the_markers(tmp_path):
    start, end = README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{start}\nold table\n{end}\nafter\n")
    write_readme_table(readme, "new table\n")
    assert readme.read_text() == f"# title\n\nbefore\n{start}\nnew table\n{end}\nafter\n"
    write_readme_table(readme, "newer")
    assert readme.read_text().count(start) == 1 and "newer\n" in readme.read_text()


def test_a_readme_without_markers_is_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        write_readme_table(readme, "table")
    assert readme.read_text() == "no markers here\n"
