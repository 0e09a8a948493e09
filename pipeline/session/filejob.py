"""A print job's file side, sans-IO: bytes in (chunks read by the streamer task), commands out.

`FileJob` splits chunks into lines, strips comments and blank lines, and hands the host one
Command at a time tagged `source:file`, `filepos:<byte after the line>` and
`fileline:<the line's number in the file>`. It keeps at most a few chunks of the file in memory, so
a 500 MB file streams in constant space. Progress is by bytes, or by M73 when the file has it.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from pipeline.gcode import Command, strip_comment

CHUNK = 64 * 1024
LOW_WATER = 512  # lines left before the streamer should read another chunk
_SOURCE_FILE = "source:file"


@attrs.frozen
class JobFile:
    """What is being printed (the payload of the print events)."""

    name: str
    path: str
    size: int
    origin: str = "local"
    user: str | None = None  # who started the print (the API key's name)

    def payload(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "origin": self.origin, "size": self.size,
                "owner": self.user, "user": self.user}


class FileJob:
    def __init__(self, file: JobFile) -> None:
        self.file = file
        self.read_pos = 0        # bytes handed to feed()
        self.pos = 0             # bytes consumed by next_command (comments and blanks included)
        self.line_no = 0         # non-empty lines handed out
        self.text_line = 0       # lines of the file consumed, blank and comment lines too
        self.eof = False
        self.m73_progress: float | None = None
        self.m73_left: float | None = None
        self._lines: list[bytes] = []
        self._i = 0
        self._low = 0            # index past which the streamer is asked for more
        self._partial = b""
        #: Set by the streamer: called when the buffer runs low.
        self.on_hungry: Callable[[], None] | None = None

    # ---- the streamer side ---------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Add the next chunk of the file; b"" means end of file."""
        if not chunk:
            self.eof = True
            if self._partial:
                self._lines = [*self._lines[self._i:], self._partial]
                self._i = 0
                self._partial = b""
            return
        self.read_pos += len(chunk)
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        self._lines = self._lines[self._i:] + parts if self._i < len(self._lines) else parts
        self._i = 0
        self._low = len(self._lines) - LOW_WATER

    @property
    def wants_data(self) -> bool:
        return not self.eof and len(self._lines) - self._i < LOW_WATER

    @property
    def done(self) -> bool:
        """Every line of the file has been handed out."""
        return self.eof and self._i >= len(self._lines)

    # ---- the host side ---------------------------------------------------------------------
    def next_command(self) -> Command | None:
        """The next file command, or None when the buffer is empty (or the file is done)."""
        lines = self._lines
        i = self._i
        n = len(lines)
        while i < n:
            raw = lines[i]
            i += 1
            self.pos += len(raw) + 1
            self.text_line += 1
            if b";" in raw:
                text = strip_comment(raw.decode("utf-8", "replace"))
            else:
                text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            self._i = i
            if i > self._low and self.on_hungry is not None and not self.eof:
                self._low = len(lines)  # ask once per chunk
                self.on_hungry()
            self.line_no += 1
            pos = min(self.pos, self.file.size)
            return Command.parse(text, tags=frozenset(
                (_SOURCE_FILE, f"filepos:{pos}", f"fileline:{self.text_line}")))
        self._i = i
        return None

    # ---- progress ------------------------------------------------------------------------------
    @property
    def progress(self) -> float:
        """0..1: M73's figure when the file reports one, else bytes consumed over size."""
        if self.m73_progress is not None:
            return self.m73_progress
        size = self.file.size
        return min(self.pos / size, 1.0) if size > 0 else 0.0

    def time_left(self, elapsed: float) -> float | None:
        if self.m73_left is not None:
            return self.m73_left
        p = self.progress
        if p <= 0.0 or elapsed <= 0.0:
            return None
        return elapsed * (1.0 - p) / p


def file_position(cmd: Command | None) -> int | None:
    """The `filepos:` tag of a file command (used when a job ends, not per line)."""
    return _tag_number(cmd, "filepos:")


def file_line(cmd: Command | None) -> int | None:
    """The `fileline:` tag of a file command: its line number in the file (1-based)."""
    return _tag_number(cmd, "fileline:")


def _tag_number(cmd: Command | None, prefix: str) -> int | None:
    if cmd is None:
        return None
    for tag in cmd.tags:
        if tag.startswith(prefix):
            return int(tag[len(prefix):])
    return None
