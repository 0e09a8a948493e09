"""What the storage knows about its entries beyond the bytes: the listing model (`Entry`, built by
`scan`), the type path of an extension in the extension tree, `MetadataStore`, a small JSON
file (`.metadata.json` in the storage folder) keeping each file's analysis, display name and
userdata, valid only while the file's size and mtime are unchanged, and `AnalysisQueue`, which
analyses files in the background and records the results there.

No HTTP here, and it never decides whether a path is allowed: storage.py resolves paths before
they get here. Only `AnalysisQueue` is async (trio); the rest is synchronous.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from pipeline.errors import HostError
from pipeline.events.names import Event
from pipeline.files.analysis import Analyser
from pipeline.files.atomic import write_atomically
from pipeline.files.names import META_TEMP_PREFIX

log = logging.getLogger("printpipe.storage")

METADATA_FILE = ".metadata.json"
FOLDER_TYPE_PATH = ("folder",)


def is_hidden(name: str) -> bool:
    """Dot files (the metadata, `.upload-*` temp files) are never listed nor addressable."""
    return name.startswith(".")


def type_path_of(tree: dict[str, Any], ext: str) -> tuple[str, ...] | None:
    """The keys leading to the list holding `ext` in the extension tree:
    ("machinecode", "gcode") for "gco" with the built-in tree; None if it is not there."""
    ext = ext.lower()

    def walk(node: Any, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if isinstance(node, dict):
            for key, value in node.items():
                found = walk(value, (*trail, str(key)))
                if found:
                    return found
        elif isinstance(node, list) and ext in (str(x).lower() for x in node):
            return trail
        return None
    return walk(tree, ())


@attrs.frozen
class Entry:
    """One listed file or folder; `path` is relative to the storage folder, "/"-separated."""

    name: str
    path: str
    type_path: tuple[str, ...]
    size: int
    date: int
    children: tuple[Entry, ...] | None = None  # folders listed with their contents
    mtime_ns: int = 0

    @property
    def stamp(self) -> list[int]:
        """What a metadata record must match to describe this file's current content."""
        return [self.size, self.mtime_ns]

    @property
    def is_folder(self) -> bool:
        return self.type_path == FOLDER_TYPE_PATH

    @property
    def type(self) -> str:
        return self.type_path[0]

    def walk(self) -> Iterator[Entry]:
        """This entry and every listed entry below it."""
        yield self
        for child in self.children or ():
            yield from child.walk()


TypeOf = Callable[[str], "tuple[str, ...] | None"]


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


Skipped = Callable[[str, str], None]  # (storage path, why): told about each entry left out


def scan(root: str, full: str, rel: str, type_of: TypeOf, *, depth: int,
         skipped: Skipped | None = None) -> Entry | None:
    """The entry at `full` (absolute, `rel` in storage), or None when it is not listable.

    Args:
        root: the storage folder (realpath); entries whose real path leaves it are skipped.
        type_of: maps a file name to its type path, None for types the storage does not hold.
        depth: how many folder levels get `children` (0: none, 1: direct children, -1: all).
        skipped: told about each symlink left out (pointing out of the folder, a loop, a second
            link to a folder listed already); dangling links and hidden names are not reported.

    A link to a folder above it (a loop) is skipped, a folder is never entered twice on one
    branch and is listed through at most one symlink per scan, so the walk always ends, within
    a number of steps bounded by the folders' count and depth.
    """
    return _Scan(root, type_of, skipped or _ignore).entry(full, rel, depth)


def _ignore(_rel: str, _why: str) -> None:
    pass


def _contains(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@attrs.define(eq=False)
class _Scan:
    root: str
    type_of: TypeOf
    skipped: Skipped
    above: set[tuple[int, int]] = attrs.Factory(set)    # (dev, inode) of the folders entered
    linked: set[tuple[int, int]] = attrs.Factory(set)   # folders listed through a symlink

    def entry(self, full: str, rel: str, depth: int) -> Entry | None:
        name = os.path.basename(full) if rel else ""
        if name and is_hidden(name):
            return None
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + os.sep):
            self.skipped(rel, "a symlink pointing out of the storage folder")
            return None
        try:
            st = os.stat(full)
        except OSError as exc:  # a dangling symlink, a loop of links, or removed while we looked
            if exc.errno == errno.ELOOP:
                self.skipped(rel, "a loop of symlinks")
            return None
        if not stat.S_ISDIR(st.st_mode):
            tp = self.type_of(name)
            return Entry(name, rel, tp, st.st_size, int(st.st_mtime),
                         mtime_ns=st.st_mtime_ns) if tp else None
        key = (st.st_dev, st.st_ino)
        link = os.path.islink(full)
        if key in self.above or (link and _contains(real, os.path.realpath(os.path.dirname(full)))):
            self.skipped(rel, "a symlink to a folder above it (a loop)")
            return None
        if link:
            if key in self.linked:
                self.skipped(rel, "a symlink to a folder listed already through another link")
                return None
            self.linked.add(key)
        self.above.add(key)
        try:
            kids = self.children(full, rel, depth)
        finally:
            self.above.discard(key)
        return Entry(name, rel, FOLDER_TYPE_PATH, sum(k.size for k in kids), int(st.st_mtime),
                     tuple(kids) if depth != 0 else None, mtime_ns=st.st_mtime_ns)

    def children(self, full: str, rel: str, depth: int) -> list[Entry]:
        try:
            with os.scandir(full) as it:
                names = sorted(e.name for e in it)
        except OSError:
            names = []
        kids = []
        for child in names:
            entry = self.entry(os.path.join(full, child), _join(rel, child),
                               depth - 1 if depth > 0 else depth)
            if entry is not None:
                kids.append(entry)
        return kids


def stamp_of(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns]


class MetadataStore:
    """Per-file metadata kept in `<root>/.metadata.json`, keyed by storage path.

    Every record carries the size and mtime of the file it describes; a record whose file has
    changed since is stale and ignored. The JSON is loaded once and rewritten (temp + rename)
    on each change; a missing or unreadable file starts empty.
    """

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, METADATA_FILE)
        self._data: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                self._data = {k: v for k, v in data.items() if isinstance(v, dict)}
            except FileNotFoundError:
                self._data = {}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("%s is unreadable (%s); file metadata starts empty", self.path, exc)
                self._data = {}
        return self._data

    def _save(self) -> None:
        data = json.dumps(self._load(), separators=(",", ":")).encode("utf-8")
        write_atomically(self.path, data, prefix=META_TEMP_PREFIX, durable=False)

    def get(self, path: str, stamp: list[int]) -> dict[str, Any]:
        """The record of `path` if it still describes the file with `stamp` (`Entry.stamp`,
        `stamp_of(os.stat(...))`), else {}."""
        rec = self._load().get(path)
        return rec if rec is not None and rec.get("stamp") == list(stamp) else {}

    def update(self, path: str, stamp: list[int], **fields: Any) -> None:
        """Sets `fields` on the record of `path` (a stale record is dropped first)."""
        rec = dict(self.get(path, stamp))
        rec.update(fields, stamp=list(stamp))
        self._load()[path] = rec
        self._save()

    def forget(self, path: str) -> None:
        """Drops the records of `path` and of everything below it (a folder)."""
        data = self._load()
        gone = [k for k in data if k == path or k.startswith(path + "/")]
        for k in gone:
            del data[k]
        if gone:
            self._save()

    def carry(self, src: str, dst: str, stat_of: Callable[[str], os.stat_result | None], *,
              keep_source: bool) -> None:
        """Moves (or copies, `keep_source`) the records of `src` and everything below it to
        `dst`. A rename keeps size and mtime, so a moved record stays as it was; a copy has a
        new mtime, so a copied record is re-stamped, but only if it was fresh for its source.
        `stat_of(path)` gives a storage path's stat, None when it is missing."""
        data = self._load()
        carried = {}
        for k, rec in list(data.items()):
            if k != src and not k.startswith(src + "/"):
                continue
            new = dst + k[len(src):]
            if not keep_source:
                del data[k]
                carried[new] = rec
                continue
            old_st, new_st = stat_of(k), stat_of(new)
            if old_st is not None and new_st is not None and rec.get("stamp") == stamp_of(old_st):
                carried[new] = dict(rec, stamp=stamp_of(new_st))
        if carried:  # a move deletes only what it carries
            data.update(carried)
            self._save()


Publish = Callable[[Event, dict[str, Any]], None]


@attrs.define(eq=False)
class AnalysisQueue:
    """Analyses files in the background, one at a time, publishing MetadataAnalysisStarted and
    MetadataAnalysisFinished and keeping results in `meta`.

    The file is read in chunks (trio.open_file: the reads happen in a worker thread) and fed to
    the analyser in slices of about a millisecond and a half, with a yield after each, longer
    while `printing()` says a print runs, so the printer link is never starved.
    """

    meta: MetadataStore
    locate: Callable[[str], str]          # storage path -> absolute path (may raise)
    publish: Publish
    printing: Callable[[], bool]
    origin: str = "local"
    read_chunk: int = 64 * 1024
    feed_slice: int = 16 * 1024
    printing_pause: float = 0.002
    limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(1))
    queued: set[tuple[str, tuple[int, ...]]] = attrs.Factory(set)

    def queue(self, nursery: trio.Nursery, entry: Entry) -> None:
        """Analyse `entry` in `nursery` unless it is queued already (same path and content)."""
        key = (entry.path, tuple(entry.stamp))
        if not entry.is_folder and key not in self.queued:
            self.queued.add(key)
            nursery.start_soon(self._run, entry, key)

    async def _run(self, entry: Entry, key: tuple[str, tuple[int, ...]]) -> None:
        payload = {"name": entry.name, "path": entry.path, "origin": self.origin}
        try:
            async with self.limiter:
                full = self.locate(entry.path)
                if (stamp_of(os.stat(full)) != entry.stamp
                        or "analysis" in self.meta.get(entry.path, entry.stamp)):
                    return  # changed (its new content is queued) or done meanwhile
                self.publish(Event.METADATA_ANALYSIS_STARTED, payload)
                result = await self.analyse(full)
                if stamp_of(os.stat(full)) != entry.stamp:
                    log.info("%s changed while it was analysed; result dropped", entry.path)
                    return
                self.meta.update(entry.path, entry.stamp, analysis=result)
                self.publish(Event.METADATA_ANALYSIS_FINISHED, dict(payload, result=result))
        except (OSError, ValueError, HostError) as exc:  # gone, unreadable, metadata unwritable
            log.warning("analysis of %s failed: %s", entry.path, exc)
        finally:
            self.queued.discard(key)

    async def analyse(self, full: str) -> dict[str, Any]:
        """The gcodeAnalysis of the file at `full` (Analysis.to_api())."""
        analyser = Analyser()
        async with await trio.open_file(full, "rb") as f:
            while chunk := await f.read(self.read_chunk):
                for i in range(0, len(chunk), self.feed_slice):
                    analyser.feed(chunk[i:i + self.feed_slice])
                    await trio.sleep(self.printing_pause if self.printing() else 0)
        return analyser.finish().to_api()
