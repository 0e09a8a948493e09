"""Local file storage: a folder of printable files. Adding a file checks its extension
against the extension tree, runs the preprocessor stages, and writes it atomically (temp file,
fsync, rename). Names are sanitised and a path can never leave the folder. Synchronous file
IO; the HTTP layer calls it from trio in a worker thread for large uploads.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any, BinaryIO

import attrs

from .chain import Pipeline
from .errors import HostError
from .storage_hooks import extension_tree, extensions_of, preprocess

_UNSAFE = re.compile(r"[^\w.\- ()+,@\[\]]")


class StorageError(HostError):
    """A file the storage refuses: bad name, wrong extension, path outside the folder."""


class DiskFile:
    """A file to be added, read from a path on disk (the preprocessors' file object)."""

    def __init__(self, filename: str, path: str) -> None:
        self.filename = filename
        self.path = path

    def stream(self) -> BinaryIO:
        return open(self.path, "rb")  # noqa: SIM115  (the caller closes it)

    def save(self, path: str) -> None:
        shutil.copyfile(self.path, path)


@attrs.frozen
class StoredFile:
    name: str
    path: str        # relative to the storage folder
    size: int
    date: int


class LocalStorage:
    def __init__(self, root: str, pipeline: Pipeline,
                 printer_profile: dict[str, Any] | None = None) -> None:
        self.root = os.path.realpath(root)
        os.makedirs(self.root, exist_ok=True)
        self.pipeline = pipeline
        self.printer_profile = printer_profile
        self.extensions = extensions_of(extension_tree(pipeline))

    def resolve(self, path: str) -> str:
        """The absolute path of `path` inside the folder; StorageError if it would leave it."""
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise StorageError(f"{path!r}: '..' is not allowed in storage paths")
        full = os.path.realpath(os.path.join(self.root, *parts))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise StorageError(f"{path!r} points outside the storage folder")
        return full

    @staticmethod
    def sanitize(name: str) -> str:
        name = _UNSAFE.sub("_", os.path.basename(name.replace("\\", "/"))).strip(" .")
        if not name:
            raise StorageError("empty file name")
        return name

    def add_file(self, path: str, file_object: Any, *, allow_overwrite: bool = False,
                 links: Any = None) -> StoredFile:
        folder, _, name = path.replace("\\", "/").rpartition("/")
        name = self.sanitize(name)
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in self.extensions:
            raise StorageError(f"{name!r}: files of type {ext or '(none)'!r} are not accepted "
                               f"(accepted: {', '.join(sorted(self.extensions))})")
        rel = f"{folder}/{name}" if folder else name
        target = self.resolve(rel)
        if os.path.exists(target) and not allow_overwrite:
            raise StorageError(f"{rel!r} exists already")
        file_object = preprocess(self.pipeline, rel, file_object, links=links,
                                 printer_profile=self.printer_profile,
                                 allow_overwrite=allow_overwrite)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".upload-")
        os.close(fd)
        try:
            file_object.save(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        st = os.stat(target)
        return StoredFile(name, rel, st.st_size, int(st.st_mtime))
