"""Storage names and paths: sanitising a new file or folder name, normalising a storage path
("a/b.gcode", never leaving the folder lexically) with its limits, and the temp names the
storage and the upload reader write into the folder, with the sweep that removes stale ones.

Pure string rules, except `remove_stale_temps`, which walks the folder. storage.py applies
these and resolves symlinks; the HTTP layer maps StorageError to 400.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

from pipeline.errors import HostError

log = logging.getLogger("printpipe.storage")

MAX_NAME_BYTES = 255    # a file or folder name, in UTF-8: NAME_MAX of ext4, btrfs, xfs, vfat
MAX_PATH_BYTES = 1024   # a storage path: leaves the storage folder itself room in PATH_MAX (4096)

# Temp files and folders in the storage folder get one of these prefixes and tempfile's 8
# random characters; `remove_stale_temps` deletes such names and nothing else. Users cannot
# create them: `sanitize` strips leading dots and dot names are never addressable.
TEMP_PREFIX = ".upload-"          # uploads (app/http/support.py), installs, copies
META_TEMP_PREFIX = ".upload-meta-"  # the metadata file rewritten (index.py)
DELETING_PREFIX = ".deleting-"    # a folder renamed aside while it is deleted
_STALE = re.compile(r"\.(?:upload-|upload-meta-|deleting-)[a-z0-9_]{8}")
_UNSAFE = re.compile(r"[^\w.\- ()+,@\[\]]")


class StorageError(HostError):
    """A file the storage refuses: bad name, wrong extension, path outside the folder."""


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, cut after `limit` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def normalize(path: str) -> str:
    """`path` as a clean storage path ("a/b.gcode"); a leading "/" means the storage folder.

    Raises:
        StorageError: `..` segments, NUL bytes, text that is not Unicode (lone surrogates),
            a name over MAX_NAME_BYTES or a path over MAX_PATH_BYTES (UTF-8).
    """
    if "\0" in path:
        raise StorageError(f"{shown(path)}: NUL in a storage path")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"{shown(path)}: '..' is not allowed in storage paths")
    rel = "/".join(parts)
    try:
        size = len(rel.encode())
    except UnicodeEncodeError:
        raise StorageError(f"{shown(path)}: not valid Unicode text") from None
    if size > MAX_PATH_BYTES:
        raise StorageError(f"{shown(path)}: the path is {size} bytes long; storage paths are "
                           f"limited to {MAX_PATH_BYTES} bytes")
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise StorageError(f"{shown(part)}: the name is {len(part.encode())} bytes long; "
                               f"file and folder names are limited to {MAX_NAME_BYTES} bytes "
                               "(UTF-8)")
    return rel


def sanitize(name: str) -> str:
    """A new file or folder name: the last path component, characters outside letters, digits
    and `.-_ ()+,@[]` replaced by `_`, leading and trailing dots and spaces removed."""
    name = _UNSAFE.sub("_", os.path.basename(name.replace("\\", "/"))).strip(" .")
    if not name:
        raise StorageError("empty file name")
    return name


def sanitize_path(path: str) -> str:
    """A storage path whose folders may be created: normalised, then every name sanitised
    as `sanitize` does ("a b/c;d" -> "a b/c_d", "nl\\nM104" -> "nl_M104")."""
    rel = normalize(path)
    return "/".join(sanitize(part) for part in rel.split("/")) if rel else ""


def is_stale_temp(name: str) -> bool:
    """Whether `name` is one of the temp names above (a file or folder left by a crash)."""
    return _STALE.fullmatch(name) is not None


def remove_stale_temps(root: str) -> list[str]:
    """Deletes the temp files and folders that interrupted uploads, copies and deletions left
    anywhere below `root` (never following symlinks, never another name). Returns their paths
    relative to `root`."""
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            if not is_stale_temp(name):
                continue
            full = os.path.join(folder, name)
            try:
                if name in dirs and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
            except OSError as exc:
                log.warning("cannot remove the stale temp %s: %s", full, exc)
                continue
            finally:
                if name in dirs:
                    dirs.remove(name)  # never walk into it
            removed.append(os.path.relpath(full, root).replace(os.sep, "/"))
    if removed:
        log.info("removed %d stale temp file(s) from %s: %s", len(removed), root,
                 ", ".join(removed))
    return removed
