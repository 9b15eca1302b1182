"""The thread count the core uses when a call does not name one."""

from __future__ import annotations

import os

_default_threads: int | None = None


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads the core uses by default: set_num_threads' value, else all cores."""
    return _default_threads if _default_threads is not None else available_cores()


def set_num_threads(n: int | None) -> None:
    """Set the default thread count for every layer; None goes back to all cores."""
    global _default_threads
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {n!r}")
    _default_threads = n


def resolve_num_threads(n: int | None) -> int | None:
    """A call's thread count: n, else set_num_threads' value, else None (the
    core chooses from the work, up to every core)."""
    if n is None:
        return _default_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_threads must be a positive int, got {n!r}")
    return n
