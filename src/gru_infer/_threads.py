"""The thread count the core uses when a call does not name one.

By default: the threads this process may really run on, read from where
workers are told: OMP_NUM_THREADS (Ray sets it to a task's or actor's
num_cpus unless the driver's environment already has it, Dask's nanny sets
it to 1), the CPU affinity mask (taskset, cgroup cpusets) and a cgroup CPU
quota (containers, systemd units, Kubernetes pods: the tightest quota on the
process's own group or any group above it, read once per process).  Never
more threads than the process may run on, and no more than a call's work
can use (the core decides per call).  set_num_threads(n) or a call's
num_threads=n is taken as given: the caller's hard setting.  A process forked
after the core ran threads starts its own (the core's pool resets in a fork
child).
"""

from __future__ import annotations

import math
import os
import re

_default_threads: int | None = None


def _unescape(path: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline, backslash as \\ooo)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _cgroup_dirs(proc: str) -> list:
    """[(version, directory)] of this process's CPU cgroup: its own directory
    under each cgroup mount that controls CPU, found from /proc/self/cgroup and
    /proc/self/mountinfo (so a quota set on a nested group counts: a systemd
    unit's CPUQuota, a Kubernetes pod seen without a cgroup namespace)."""
    try:
        with open(os.path.join(proc, "cgroup")) as f:
            groups = f.read().splitlines()
        with open(os.path.join(proc, "mountinfo")) as f:
            mounts = f.read().splitlines()
    except OSError:
        return []
    paths = {}  # version -> the process's group path
    for line in groups:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths.setdefault(2, path)
        elif "cpu" in controllers.split(","):
            paths.setdefault(1, path)
    found = []
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        fields, tail = fields.split(), tail.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        version = {"cgroup2": 2, "cgroup": 1}.get(tail[0])
        if version is None or version not in paths:
            continue
        if version == 1 and "cpu" not in tail[2].split(","):
            continue
        path = paths[version]
        # The group's path relative to the mount's root; a group outside it
        # (another cgroup namespace) falls back to the mount point itself.
        inside = root == "/" or path == root or path.startswith(root.rstrip("/") + "/")
        relative = os.path.relpath(path, root) if inside else "."
        found.append((version, mount_point, os.path.normpath(os.path.join(mount_point, relative))))
    return found


def _read_quota(version: int, directory: str):
    """CPUs one group's quota allows, or None (no quota, or unreadable)."""
    try:
        if version == 2:
            with open(os.path.join(directory, "cpu.max")) as f:
                quota, period = f.read().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        with open(os.path.join(directory, "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None


def read_cgroup_quota(proc: str = "/proc/self") -> int | None:
    """CPUs the tightest cgroup quota on this process allows (cgroup v2
    cpu.max or v1 cfs quota / period, on its own group and every group above
    it), rounded up; None without a quota."""
    quotas = []
    for version, mount_point, directory in _cgroup_dirs(proc):
        while True:
            quota = _read_quota(version, directory)
            if quota is not None:
                quotas.append(quota)
            if directory == mount_point or len(directory) <= len(mount_point):
                break
            directory = os.path.dirname(directory)
    if not quotas and proc == "/proc/self":  # no mountinfo: the usual container mounts
        quotas = [q for q in (_read_quota(2, "/sys/fs/cgroup"),
                              _read_quota(1, "/sys/fs/cgroup/cpu")) if q is not None]
    return max(1, math.ceil(min(quotas) - 1e-9)) if quotas else None


_quota_cache: tuple | None = None  # (pid, quota): read once per process


def _cgroup_quota() -> int | None:
    global _quota_cache
    pid = os.getpid()
    if _quota_cache is None or _quota_cache[0] != pid:
        _quota_cache = (pid, read_cgroup_quota())
    return _quota_cache[1]


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
    """The most threads a call runs on by default: set_num_threads' value,
    else the environment's (a call's work may need fewer: the core then takes
    fewer)."""
    return _default_threads if _default_threads is not None else environment_threads()


def _check(n, what: str) -> int:
    from .errors import InputError, InputTypeError

    if not isinstance(n, int) or isinstance(n, bool):
        raise InputTypeError(f"{what} must be a positive int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise InputError(f"{what} must be a positive int, got {n!r}")
    return min(n, 1 << 12)  # beyond any machine; keeps the value a C int


def set_num_threads(n: int | None) -> None:
    """Set the thread count for every call that names none (exact, as a call's
    num_threads is); None goes back to the default: the core chooses from the
    work, up to the environment's count."""
    global _default_threads
    _default_threads = None if n is None else _check(n, "num_threads")


def resolve_num_threads(n: int | None) -> int | None:
    """A call's thread count: n, else set_num_threads' value (both exact), else
    None: the core chooses from the work and how the machine answers, up to
    the environment's count."""
    if n is None:
        return _default_threads
    return _check(n, "num_threads")
