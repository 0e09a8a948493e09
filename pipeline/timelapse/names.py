"""Timelapse names and listings: a print's frame set is `<prefix>-<n>.jpg` in the printer's
timelapse temp folder (`<prefix>` = the file's base name and the start time), its movie
`<prefix>.<format>` in the timelapse folder, as OctoPrint names them; the movie extensions
the listing shows (the built-in ones plus what `timelapse.extensions` stages add); the shapes
of `/api/timelapse`'s files and unrendered sets; and what retention removes. Pure.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from collections.abc import Iterable

import attrs

from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase

log = logging.getLogger("printpipe.timelapse")

MOVIE_EXTENSIONS = ("mpg", "mpeg", "mp4", "m4v", "mkv", "webm", "avi", "gif")
_FRAME_RE = re.compile(r"(?P<prefix>.+)-(?P<n>\d+)\.jpg")
#: What a name from a URL may be: one plain file name.
_SAFE_RE = re.compile(r"[^/\\\x00]+")


def prefix_for(gcode_name: str, started: float) -> str:
    """`<file base name>_<YYYYmmddHHMMSS>` (local time), as OctoPrint's."""
    base = posixpath.splitext(posixpath.basename(gcode_name))[0] or "timelapse"
    return f"{base}_{time.strftime('%Y%m%d%H%M%S', time.localtime(started))}"


def frame_name(prefix: str, n: int) -> str:
    return f"{prefix}-{n}.jpg"


def frame_pattern(prefix: str) -> str:
    """ffmpeg's input pattern for a frame set."""
    return f"{prefix}-%d.jpg"


def frame_of(name: str) -> tuple[str, int] | None:
    """(prefix, number) of a frame file name, or None."""
    m = _FRAME_RE.fullmatch(name)
    return (m.group("prefix"), int(m.group("n"))) if m else None


def safe_name(name: str) -> bool:
    """A single file name (no folder, not . or ..)."""
    return bool(_SAFE_RE.fullmatch(name)) and name not in (".", "..")


def extensions(pipeline: Pipeline, output_format: str) -> tuple[str, ...]:
    """The movie extensions listed: the built-in ones, the configured format and those the
    `timelapse.extensions` stages return (a list of strings; anything else is logged)."""
    out = list(dict.fromkeys([*MOVIE_EXTENSIONS, output_format]))
    for st, ret in pipeline.call(Phase.TIMELAPSE_EXTENSIONS):
        if ret is None:
            continue
        if not isinstance(ret, (list, tuple)) or not all(isinstance(e, str) for e in ret):
            st.counters.errors += 1
            log.error("stage %r in %s returned %r, not a list of extensions; ignored", st.id,
                      Phase.TIMELAPSE_EXTENSIONS.value, ret)
            continue
        out += [e.lower().lstrip(".") for e in ret if e.strip(".")]
    return tuple(dict.fromkeys(out))


def human_size(n: int) -> str:
    """1.2MB, as OctoPrint's listing shows sizes."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.1f}GB"


def shown_date(mtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))


@attrs.frozen
class Movie:
    name: str
    bytes: int
    mtime: float

    def listing(self, base: str = "") -> dict[str, object]:
        return {"name": self.name, "size": human_size(self.bytes), "bytes": self.bytes,
                "date": shown_date(self.mtime), "url": f"{base}/downloads/timelapse/{self.name}"}


@attrs.frozen
class FrameSet:
    """An unrendered set of frames in the temp folder."""

    prefix: str
    frames: int
    bytes: int
    mtime: float

    def listing(self, *, recording: bool, rendering: bool,
                progress: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.prefix, "size": human_size(self.bytes), "bytes": self.bytes,
            "date": shown_date(self.mtime), "frames": self.frames, "recording": recording,
            "rendering": rendering, "processing": recording or rendering}
        if progress is not None:
            out["progress"] = progress
        return out


def frame_sets(files: Iterable[tuple[str, int, float]]) -> list[FrameSet]:
    """The frame sets among (name, size, mtime) of the temp folder's files, newest first."""
    sets: dict[str, list[int | float]] = {}
    for name, size, mtime in files:
        found = frame_of(name)
        if found is None:
            continue
        acc = sets.setdefault(found[0], [0, 0, 0.0])
        acc[0] += 1
        acc[1] += size
        acc[2] = max(acc[2], mtime)
    out = [FrameSet(p, int(a[0]), int(a[1]), float(a[2])) for p, a in sets.items()]
    return sorted(out, key=lambda s: -s.mtime)


def expired(items: Iterable[tuple[str, float]], *, now: float, keep_days: float,
            keep_count: int) -> list[str]:
    """The names (of (name, mtime)) that retention removes: older than keep_days (0: any
    age kept), and all but the newest keep_count (0: no limit)."""
    ordered = sorted(items, key=lambda i: -i[1])
    gone = []
    for i, (name, mtime) in enumerate(ordered):
        if (keep_days and now - mtime > keep_days * 86400) or (keep_count and i >= keep_count):
            gone.append(name)
    return gone
