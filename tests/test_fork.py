"""A model used with threads in a parent still runs in a fork()ed child (a
multiprocessing worker, a gunicorn worker forked after warm-up).

The parent runs in its own interpreter, so that pytest itself is never forked;
each child gets 20 s and is killed after that.  (It hung with libgomp's
thread pool; the core's own pool, from the kernels branch, survives a fork.)
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)

SCRIPT = r"""
import os, signal, sys, time
import numpy as np
import gru_infer

model = gru_infer.convert(sys.argv[1])
x = np.random.default_rng(0).standard_normal((2, 40, model.input_shape[-1])).astype(np.float32)
expected = model(x, num_threads=1)
failures = []
for parent_threads in (1, 2):
    for child_threads in (1, 2):
        model(x, num_threads=parent_threads)
        pid = os.fork()
        if pid == 0:
            ok = np.allclose(model(x, num_threads=child_threads), expected, atol=1e-6)
            os._exit(0 if ok else 3)
        start = time.time()
        while time.time() - start < 20:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if status != 0:
                    failures.append(f"parent {parent_threads}, child {child_threads}: status {status}")
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            failures.append(f"parent {parent_threads}, child {child_threads}: hang")
print("; ".join(failures) or "ok")
sys.exit(1 if failures else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_model_runs_in_a_forked_child_after_threads_in_the_parent():
    model = os.path.join(HERE, "fixtures", "torch", "bigru2_linear_sd.pt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", SCRIPT, model], capture_output=True, text=True,
                            timeout=200, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
