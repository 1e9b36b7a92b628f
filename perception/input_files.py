"""Whether a path can be an input file at all, before any decoder opens it: one wording for every command."""
from __future__ import annotations

import os
import stat


def file_problem(path: str | os.PathLike, what: str) -> str | None:
    """Why ``path`` cannot be read as ``what`` ("an image file", "a video file"), or None when it can.

    A FIFO or device is refused: reading it could block, and decoders read a file more than once.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"cannot read it: {error.strerror}"
    if stat.S_ISDIR(status.st_mode):
        return f"is a directory, not {what}"
    if stat.S_ISFIFO(status.st_mode):
        return f"is a named pipe (FIFO), not {what}"
    if not stat.S_ISREG(status.st_mode):
        return f"is not a regular file (a device or a socket), not {what}"
    return "is empty (0 bytes)" if status.st_size == 0 else None
