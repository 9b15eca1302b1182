"""Reading the first bytes of a file, with the errors every reader gives."""

from __future__ import annotations

import os

from ..errors import FormatError


def read_head(path, size: int = 8) -> bytes:
    """The first bytes of a file; FileNotFoundError if it is missing, a
    FormatError naming it when it can't be read."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{os.fspath(path)}: a folder, not a checkpoint file") from None
    except OSError as error:
        raise FormatError(f"{os.fspath(path)}: cannot read: {error.strerror or error}") from None
