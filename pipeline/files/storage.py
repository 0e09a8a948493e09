"""Local file storage: a folder of printable files and sub-folders. Adding a file checks its
extension against the extension tree, runs the preprocessor stages, and writes it atomically
(temp file, fsync, rename); an uploaded temp file untouched by the stages is renamed in. Names
are sanitised and limited (names.py) and a path can never leave the folder (`..`, symlinks
pointing out); dot files (`.metadata.json`, `.upload-*` temp files) are never listed nor
addressable, and stale temp files are swept at start. Move and copy never overwrite.
Synchronous file IO, no HTTP, no events: the HTTP layer publishes and runs the slow calls
(uploads, copies) in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from typing import Any, BinaryIO

import attrs

from pipeline.files.atomic import fsync_dir
from pipeline.files.index import Entry, is_hidden, scan, type_path_of
from pipeline.files.names import (
    DELETING_PREFIX,
    TEMP_PREFIX,
    StorageError,
    normalize,
    remove_stale_temps,
    sanitize,
    sanitize_path,
)
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.file_phases import extension_tree, extensions_of, preprocess

__all__ = ["DiskFile", "EntryExists", "LocalStorage", "NoSuchEntry", "StorageError",
           "StoredFile", "UnsupportedType"]

log = logging.getLogger("printpipe.storage")

# errors after which os.link cannot give a no-overwrite rename, so we check and rename instead
_NO_HARDLINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK,
                 errno.EACCES}


class NoSuchEntry(StorageError):
    """The file or folder (or the folder to put something in) does not exist."""


class EntryExists(StorageError):
    """The destination is taken; the storage never overwrites it silently."""


class UnsupportedType(StorageError):
    """The file's extension is not in the extension tree."""


class DiskFile:
    """A file to be added, read from a path on disk (the preprocessors' file object)."""

    def __init__(self, filename: str, path: str) -> None:
        self.filename = filename
        self.path = path

    def stream(self) -> BinaryIO:
        return open(self.path, "rb")  # the caller closes it

    def save(self, path: str) -> None:
        shutil.copyfile(self.path, path)


@attrs.frozen
class StoredFile:
    name: str
    path: str        # relative to the storage folder
    size: int
    date: int


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _rename_noreplace(src: str, dst: str) -> None:
    """Renames `src` to `dst`; EntryExists if `dst` exists. Files go through a hard link, which
    fails atomically on an existing name; folders (and filesystems without links) are checked
    first, which is racy only against other processes writing into the folder."""
    if not os.path.isdir(src) or os.path.islink(src):
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            raise EntryExists(f"{os.path.basename(dst)!r} exists already") from None
        except OSError as exc:
            if exc.errno not in _NO_HARDLINKS:
                raise
        else:
            os.unlink(src)
            fsync_dir(os.path.dirname(dst))
            return
    if os.path.lexists(dst):
        raise EntryExists(f"{os.path.basename(dst)!r} exists already")
    os.rename(src, dst)
    fsync_dir(os.path.dirname(dst))


class LocalStorage:
    def __init__(self, root: str, pipeline: Pipeline,
                 printer_profile: dict[str, Any] | None = None) -> None:
        self.root = os.path.realpath(root)
        os.makedirs(self.root, exist_ok=True)
        self.pipeline = pipeline
        self.printer_profile = printer_profile
        self.tree = extension_tree(pipeline)
        self.extensions = extensions_of(self.tree)
        self._reported: set[tuple[str, str]] = set()

    def remove_stale_temps(self) -> list[str]:
        """Deletes the temp files interrupted uploads, copies and deletions left in the folder
        (files/names.py's temp names only); `printpipe serve` calls it before serving."""
        return remove_stale_temps(self.root)

    def _skipped(self, rel: str, why: str) -> None:
        """Tells the log once (per storage path and reason) about an entry a listing skips."""
        if (rel, why) not in self._reported:
            self._reported.add((rel, why))
            log.warning("storage: %r is not listed: %s", rel, why)

    # ---- paths ----------------------------------------------------------------------------
    normalize = staticmethod(normalize)
    sanitize = staticmethod(sanitize)
    sanitize_path = staticmethod(sanitize_path)

    def resolve(self, path: str) -> str:
        """The absolute path of `path` inside the folder; StorageError if it would leave it."""
        parts = self.normalize(path).split("/")
        full = os.path.realpath(os.path.join(self.root, *parts))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise StorageError(f"{path!r} points outside the storage folder")
        return full

    def locate(self, path: str) -> tuple[str, str]:
        """(storage path, absolute path) of an entry that may not exist yet. The parent is
        resolved, the last component is not followed (deleting a link deletes the link).

        Raises:
            StorageError: the path or its real path leaves the folder.
            NoSuchEntry: a component is a dot name (hidden entries are not addressable).
        """
        rel = self.normalize(path)
        if any(is_hidden(p) for p in rel.split("/")):
            raise NoSuchEntry(f"{path!r}: names starting with '.' are reserved")
        self.resolve(rel)
        parent, _, name = rel.rpartition("/")
        return rel, (os.path.join(self.resolve(parent), name) if rel else self.root)

    def existing(self, path: str) -> tuple[str, str]:
        """Like `locate`, but NoSuchEntry when nothing is there."""
        rel, full = self.locate(path)
        if not os.path.exists(full):
            raise NoSuchEntry(f"{rel or '/'!r} does not exist")
        return rel, full

    def is_folder(self, path: str) -> bool:
        """Whether a folder is at `path` (a storage path that may not exist)."""
        return os.path.isdir(self.locate(path)[1])

    def missing_folders(self, path: str) -> list[str]:
        """The folders of storage path `path` (itself included) that do not exist yet,
        outermost first: what adding a file below `path` will create."""
        parts = path.split("/") if path else []
        wanted = ("/".join(parts[:i + 1]) for i in range(len(parts)))
        return [p for p in wanted if not os.path.lexists(self.locate(p)[1])]

    def type_of(self, name: str) -> tuple[str, ...] | None:
        """The type path of a file name (("machinecode", "gcode")), None if not accepted."""
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in self.extensions:
            return None
        return type_path_of(self.tree, ext) or ("machinecode", ext)

    def _file_target(self, path: str, *, allow_overwrite: bool) -> tuple[str, str]:
        folder, _, name = self.normalize(path).rpartition("/")
        name = self.sanitize(name)
        if self.type_of(name) is None:
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            raise UnsupportedType(f"{name!r}: files of type {ext or '(none)'!r} are not "
                                  f"accepted (accepted: {', '.join(sorted(self.extensions))})")
        rel, target = self.locate(f"{folder}/{name}" if folder else name)
        if os.path.isdir(target) or (os.path.lexists(target) and not allow_overwrite):
            raise EntryExists(f"{rel!r} exists already")
        return rel, target

    # ---- adding ---------------------------------------------------------------------------
    def add_file(self, path: str, file_object: Any, *, allow_overwrite: bool = False,
                 links: Any = None) -> StoredFile:
        """Adds a file through the preprocessor stages, written atomically; parent folders
        are created. Raises UnsupportedType, EntryExists, StorageError."""
        rel, target = self._file_target(path, allow_overwrite=allow_overwrite)
        return self._install(rel, target, file_object, links=links, allow_overwrite=allow_overwrite)

    def add_upload(self, path: str, temp_path: str, *, allow_overwrite: bool = False,
                   links: Any = None) -> StoredFile:
        """Adds an uploaded temp file (on the storage's filesystem). When no preprocessor
        replaces it, it is renamed into place, never copied; the temp file is gone afterwards
        whatever happens."""
        try:
            rel, target = self._file_target(path, allow_overwrite=allow_overwrite)
            return self._install(rel, target, DiskFile(os.path.basename(rel), temp_path),
                                 links=links, allow_overwrite=allow_overwrite, temp=temp_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)

    def _install(self, rel: str, target: str, file_object: Any, *, links: Any,
                 allow_overwrite: bool, temp: str | None = None) -> StoredFile:
        file_object = preprocess(self.pipeline, rel, file_object, links=links,
                                 printer_profile=self.printer_profile,
                                 allow_overwrite=allow_overwrite)
        folder = os.path.dirname(target)
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StorageError(f"{os.path.dirname(rel)!r} is a file, not a folder") from None
        moved = False
        if temp is not None and getattr(file_object, "path", None) == temp:
            _fsync_file(temp)  # cheap when the uploader synced it already
            try:
                os.replace(temp, target)
                moved = True
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # another filesystem: copy below
                    raise
        if not moved:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
            os.close(fd)
            try:
                file_object.save(tmp)
                _fsync_file(tmp)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        fsync_dir(folder)
        st = os.stat(target)
        return StoredFile(os.path.basename(rel), rel, st.st_size, int(st.st_mtime))

    def add_folder(self, path: str, *, parents: bool = False) -> Entry:
        """Creates a folder (its name sanitised). NoSuchEntry if the parent is missing (unless
        `parents`), EntryExists if the name is taken."""
        parent, _, name = self.normalize(path).rpartition("/")
        rel, full = self.locate(f"{parent}/{self.sanitize(name)}" if parent else
                                self.sanitize(name))
        if os.path.lexists(full):
            raise EntryExists(f"{rel!r} exists already")
        if parents:
            os.makedirs(os.path.dirname(full), exist_ok=True)
        elif not os.path.isdir(os.path.dirname(full)):
            raise NoSuchEntry(f"folder {parent!r} does not exist")
        try:
            os.mkdir(full)
        except FileExistsError:
            raise EntryExists(f"{rel!r} exists already") from None
        fsync_dir(os.path.dirname(full))
        return self.entry(rel)

    # ---- reading --------------------------------------------------------------------------
    def entry(self, path: str, *, depth: int = 0) -> Entry:
        """The listing entry of a file or folder; folders get `children` `depth` levels deep
        (-1: all). NoSuchEntry for missing entries and files of types not accepted."""
        rel, full = self.existing(path)
        found = scan(self.root, full, rel, self.type_of, depth=depth, skipped=self._skipped)
        if found is None:
            raise NoSuchEntry(f"{rel!r} is not a file the storage holds")
        return found

    def listing(self, path: str = "", *, recursive: bool = False) -> list[Entry]:
        """The entries in a folder (the whole tree below it with `recursive`), sorted by name."""
        folder = self.entry(path, depth=-1 if recursive else 1)
        if not folder.is_folder:
            raise StorageError(f"{folder.path!r} is not a folder")
        return list(folder.children or ())

    def disk_usage(self) -> tuple[int, int]:
        """(free, total) bytes of the filesystem holding the storage."""
        usage = shutil.disk_usage(self.root)
        return usage.free, usage.total

    # ---- changing -------------------------------------------------------------------------
    def remove_file(self, path: str) -> Entry:
        """Deletes a file (a symlink: the link); returns what it was."""
        found = self.entry(path)
        if found.is_folder:
            raise StorageError(f"{found.path!r} is a folder")
        full = self.locate(found.path)[1]
        os.unlink(full)
        fsync_dir(os.path.dirname(full))
        return found

    def remove_folder(self, path: str, *, recursive: bool = True) -> Entry:
        """Deletes a folder; without `recursive` only an empty one (EntryExists otherwise).
        The folder is renamed to a hidden name first, so it never shows half deleted."""
        found = self.entry(path, depth=-1)
        if not found.is_folder:
            raise StorageError(f"{found.path!r} is not a folder")
        if not found.path:
            raise StorageError("the storage folder itself cannot be removed")
        full = self.locate(found.path)[1]
        if os.path.islink(full):
            os.unlink(full)
        elif not recursive:
            try:
                os.rmdir(full)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise EntryExists(f"folder {found.path!r} is not empty") from None
                raise
        else:
            doomed = tempfile.mkdtemp(dir=os.path.dirname(full), prefix=DELETING_PREFIX)
            os.rename(full, os.path.join(doomed, "x"))
            shutil.rmtree(doomed)
        fsync_dir(os.path.dirname(full))
        return found

    def _destination(self, source: Entry, path: str) -> tuple[str, str]:
        parent, _, name = self.normalize(path).rpartition("/")
        name = self.sanitize(name)
        rel, full = self.locate(f"{parent}/{name}" if parent else name)
        if not source.is_folder and self.type_of(name) != self.type_of(source.name):
            raise UnsupportedType(f"{rel!r}: a move or copy cannot change the file type")
        if source.is_folder and (rel == source.path or rel.startswith(source.path + "/")):
            raise StorageError(f"cannot put folder {source.path!r} inside itself")
        if not os.path.isdir(os.path.dirname(full)):
            raise NoSuchEntry(f"folder {parent!r} does not exist")
        if os.path.lexists(full):
            raise EntryExists(f"{rel!r} exists already")
        return rel, full

    def move(self, src: str, dst: str) -> tuple[Entry, Entry]:
        """Renames a file or folder to the storage path `dst` (whose parent must exist);
        returns (source as it was, destination). Never overwrites (EntryExists)."""
        source = self.entry(src, depth=-1)
        if not source.path:
            raise StorageError("the storage folder itself cannot be moved")
        rel, full = self._destination(source, dst)
        _rename_noreplace(self.locate(source.path)[1], full)
        return source, self.entry(rel)

    def copy(self, src: str, dst: str) -> tuple[Entry, Entry]:
        """Copies a file or folder to `dst` (whose parent must exist): into a hidden temp
        name first, then renamed, so a half copy is never visible. Symlinks inside are copied
        as links, never followed. Returns (source, destination)."""
        source = self.entry(src, depth=-1)
        if not source.path:
            raise StorageError("the storage folder itself cannot be copied")
        rel, full = self._destination(source, dst)
        src_full = self.locate(source.path)[1]
        folder = os.path.dirname(full)
        tmp = tempfile.mkdtemp(dir=folder, prefix=TEMP_PREFIX)
        try:
            staged = os.path.join(tmp, "x")
            if source.is_folder:
                shutil.copytree(src_full, staged, symlinks=True,
                                ignore=lambda _d, names: [n for n in names if is_hidden(n)])
            else:
                shutil.copyfile(src_full, staged)
                _fsync_file(staged)
            _rename_noreplace(staged, full)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return source, self.entry(rel)
