"""What every gru_infer command does at its edges: a closed pipe and Ctrl-C.

`gru-infer demo | head -3` closes the pipe while the command still has lines to
write; a command then stops silently with status 141 (128 + SIGPIPE), as a C
tool killed by SIGPIPE does, rather than print a traceback.  Ctrl-C stops it
with status 130.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of what is
    still buffered does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (tests)
        pass


def run_command(body: Callable[[], int]) -> int:
    """body's exit status; 141 on a closed pipe, 130 on Ctrl-C, without a traceback."""
    try:
        status = body()
        sys.stdout.flush()  # a pipe's buffer is written here, inside the guard
        return status
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
