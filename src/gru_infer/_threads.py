"""The thread count the core uses when a call does not name one.

By default: the threads this process may really run on, read from where
workers are told: OMP_NUM_THREADS (Ray sets it to a task's num_cpus, Dask's
nanny to 1), the CPU affinity mask (taskset, cgroup cpusets) and a cgroup CPU
quota (containers).  set_num_threads(n) or a call's num_threads=n overrides.
Never more threads than the process may run on.
"""

from __future__ import annotations

import math
import os

_default_threads: int | None = None


def _cgroup_quota() -> int | None:
    """CPUs a cgroup v2 (cpu.max) or v1 (cfs quota / period) quota allows, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: the affinity mask and any cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def environment_threads() -> int:
    """The default from the environment: OMP_NUM_THREADS when set (its first
    value, as OpenMP reads it), within the cores this process may use."""
    cores = available_cores()
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if text.isdigit() and int(text) > 0:
        return min(int(text), cores)
    return cores


def get_num_threads() -> int:
    """Threads the core uses by default: set_num_threads' value, else the environment's."""
    return _default_threads if _default_threads is not None else environment_threads()


def _check(n, what: str) -> int:
    from .errors import InputError, InputTypeError

    if not isinstance(n, int) or isinstance(n, bool):
        raise InputTypeError(f"{what} must be a positive int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise InputError(f"{what} must be a positive int, got {n!r}")
    return min(n, 1 << 12)  # beyond any machine; keeps the value a C int


def set_num_threads(n: int | None) -> None:
    """Set the default thread count for every layer; None goes back to the environment's."""
    global _default_threads
    _default_threads = None if n is None else _check(n, "num_threads")


def resolve_num_threads(n: int | None) -> int:
    return get_num_threads() if n is None else _check(n, "num_threads")
