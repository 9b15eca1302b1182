"""tools/fuzz.py keeps working: every format makes inputs from its seeds and
runs them in capped children, each ending ok or refused (the CI campaign,
.ci/fuzz.sh, runs longer)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
fuzz = pytest.importorskip("fuzz")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="the harness caps address space, which ASan's shadow memory needs")
@pytest.mark.parametrize("name", sorted(fuzz.FORMATS))
def test_each_format_runs_a_few_inputs(name, tmp_path):
    summary = fuzz.campaign(fuzz.FORMATS[name], float("inf"), seed=7, out=str(tmp_path),
                            memory=fuzz.MEMORY_BYTES, timeout=fuzz.TIMEOUT_S, max_inputs=3,
                            quiet=True)
    assert summary["inputs"] == 3
    assert set(summary["outcomes"]) <= {"ok", "refused", "refused_on_call"}, summary


def test_an_iteration_is_made_again_from_its_seed(tmp_path):
    fmt = fuzz.FORMATS["torch_zip"]
    seeds = fmt.seeds(str(tmp_path / "seeds"))
    made = []
    for work in ("a", "b"):
        os.makedirs(tmp_path / work)
        path, _, described = fuzz.make_input(fmt, seeds, 5, 42, str(tmp_path / work))
        with open(path, "rb") as f:
            made.append((f.read(), described))
    assert made[0] == made[1]
