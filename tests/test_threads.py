"""The thread policy as workers meet it: OMP_NUM_THREADS (Ray, Dask), the
affinity mask (taskset, cpusets), cgroup quotas, and explicit settings."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gru_infer import _threads

PROBE = textwrap.dedent("""
    import json, os, sys
    cpus = os.environ.pop("PROBE_AFFINITY", None)
    if cpus is not None:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    import numpy as np
    import gru_infer
    from gru_infer import _threads
    from gru_infer.spec.layers import GRUCell, Recurrent
    rng = np.random.default_rng(0)
    cell = GRUCell(rng.standard_normal((384, 64)).astype(np.float32) * 0.1,
                   rng.standard_normal((384, 128)).astype(np.float32) * 0.1)
    model = gru_infer.Model.sequential([Recurrent("gru", [cell])], input_shape=(None, 64))
    if len(sys.argv) > 1:
        gru_infer.set_num_threads(int(sys.argv[1]))
    before = len(os.listdir("/proc/self/task"))
    model(np.ones((64, 30, 64), np.float32))  # big enough for the core to want threads
    after = len(os.listdir("/proc/self/task"))
    print(json.dumps({"threads": gru_infer.get_num_threads(), "started": after - before,
                      "cores": _threads.available_cores()}))
""")


def _probe(env: dict, *args) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                            timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc/self/task and sched_setaffinity are Linux's")


@linux_only
def test_omp_num_threads_1_as_ray_and_dask_set_it_runs_on_one_thread():
    found = _probe({"OMP_NUM_THREADS": "1"})
    assert found["threads"] == 1
    assert found["started"] == 0  # the core started no thread of its own


@linux_only
def test_a_restricted_affinity_mask_caps_the_threads():
    first = min(os.sched_getaffinity(0))
    found = _probe({"PROBE_AFFINITY": str(first), "OMP_NUM_THREADS": "8"})
    assert found["threads"] == 1 and found["cores"] == 1
    assert found["started"] == 0


@linux_only
def test_omp_num_threads_above_the_cores_is_capped():
    found = _probe({"OMP_NUM_THREADS": "64"})
    assert found["threads"] == found["cores"] == _threads.available_cores()


@linux_only
def test_an_explicit_setting_wins_over_the_environment():
    assert _probe({"OMP_NUM_THREADS": "1"}, "2")["threads"] == 2


@pytest.mark.parametrize("value, expected", [("1", 1), ("2,1", 2), ("abc", None), ("0", None),
                                             ("", None), (" 1 ", 1)])
def test_omp_num_threads_values(monkeypatch, value, expected):
    monkeypatch.setattr(_threads, "available_cores", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _threads.environment_threads() == (expected or 4)


def test_a_cgroup_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(_threads, "_cgroup_quota", lambda: 1)
    assert _threads.available_cores() == 1


# -- cgroup quotas: the process's own group and those above it ---------------------------


def _fake(tmp_path, cgroup: str, mounts: list, files: dict) -> str:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    lines = [f"{30 + i} 1 0:{40 + i} {root} {tmp_path / point} rw - {kind} {kind} {opts}"
             for i, (root, point, kind, opts) in enumerate(mounts)]
    (proc / "mountinfo").write_text("\n".join(lines) + "\n")
    for path, text in files.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(proc)


def test_cgroup_v2_quota_on_a_parent_group(tmp_path):
    proc = _fake(tmp_path, "0::/kubepods/pod1/ctr\n", [("/", "cg", "cgroup2", "rw")], {
        "cg/kubepods/pod1/ctr/cpu.max": "max 100000\n",
        "cg/kubepods/pod1/cpu.max": "150000 100000\n",  # 1.5 CPUs -> 2 threads
        "cg/kubepods/cpu.max": "400000 100000\n",
    })
    assert _threads.read_cgroup_quota(proc) == 2


def test_cgroup_v2_without_a_quota(tmp_path):
    proc = _fake(tmp_path, "0::/user.slice\n", [("/", "cg", "cgroup2", "rw")],
                 {"cg/user.slice/cpu.max": "max 100000\n"})
    assert _threads.read_cgroup_quota(proc) is None


def test_cgroup_v1_quota_with_a_namespaced_mount_root(tmp_path):
    # The cpu hierarchy mounted at its /docker/abc group, the process in it.
    proc = _fake(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
                 [("/docker/abc", "cpu dir", "cgroup", "rw,cpu,cpuacct"),
                  ("/docker/abc", "mem", "cgroup", "rw,memory")],
                 {"cpu dir/cpu.cfs_quota_us": "50000\n", "cpu dir/cpu.cfs_period_us": "100000\n",
                  "mem/cpu.cfs_quota_us": "10\n", "mem/cpu.cfs_period_us": "100000\n"})
    text = (tmp_path / "proc" / "mountinfo").read_text().replace("cpu dir", "cpu\\040dir")
    (tmp_path / "proc" / "mountinfo").write_text(text)
    assert _threads.read_cgroup_quota(proc) == 1


def test_cgroup_v1_unlimited_leaf_under_a_limited_parent(tmp_path):
    proc = _fake(tmp_path, "2:cpu:/system.slice/worker.service\n",
                 [("/", "cpu", "cgroup", "rw,cpu")], {
                     "cpu/system.slice/worker.service/cpu.cfs_quota_us": "-1\n",
                     "cpu/system.slice/worker.service/cpu.cfs_period_us": "100000\n",
                     "cpu/system.slice/cpu.cfs_quota_us": "300000\n",
                     "cpu/system.slice/cpu.cfs_period_us": "100000\n",
                 })
    assert _threads.read_cgroup_quota(proc) == 3


def test_no_cgroup_information(tmp_path):
    (tmp_path / "proc").mkdir()
    assert _threads.read_cgroup_quota(str(tmp_path / "proc")) is None


FORK = textwrap.dedent("""
    import multiprocessing, numpy as np, gru_infer
    from gru_infer.spec.layers import GRUCell, Recurrent
    rng = np.random.default_rng(0)
    cell = GRUCell(rng.standard_normal((384, 64)).astype(np.float32) * 0.1,
                   rng.standard_normal((384, 128)).astype(np.float32) * 0.1)
    model = gru_infer.Model.sequential([Recurrent("gru", [cell])], input_shape=(None, 64))
    x = np.ones((64, 30, 64), np.float32)
    y = model(x, num_threads=2)  # the parent runs a team of the core's threads

    def child(_):  # the pool resets in a fork child and starts its own threads
        return bool(np.array_equal(model(x, num_threads=2), y))

    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(1) as pool:
            print(pool.map(child, [0])[0])
""")


@linux_only
def test_a_process_forked_after_the_core_ran_threads_runs_threads_and_does_not_hang():
    result = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
