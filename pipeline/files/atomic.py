"""Small state files written so that a crash or a power cut leaves either the old file or the
new one, never a torn mix: a temp file in the same folder, fsync, rename, fsync of the folder.

Used for keys.json, the metadata index, the print journal and the print history.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def fsync_dir(path: str) -> None:
    """Makes a rename in `path` durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: str, data: bytes, *, prefix: str = ".tmp-",
                     durable: bool = True) -> None:
    """Replaces `path` with `data` (mode 0600, as mkstemp makes it). With `durable` the data and
    the rename are fsynced; without it only the rename is atomic (for caches)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(folder)
