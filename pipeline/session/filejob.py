"""A print job's file side, sans-IO: bytes in (chunks read by the streamer task), commands out.

`FileJob` splits chunks into lines, strips comments and blank lines, and hands the host one
Command at a time tagged `source:file`, `filepos:<byte after the line>` and
`fileline:<the line's number in the file>`. It keeps at most a few chunks of the file in memory, so
a 500 MB file streams in constant space. Progress is by bytes, or by M73 when the file has it.
A UTF-8 byte order mark at the start of the file is skipped.

`gcode_problem` tells from a file's first block whether it is G-code text at all: uploads and
print starts refuse binary files (NUL or control bytes, Prusa's binary G-code, UTF-16) before
anything is stored or sent.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

import attrs

from pipeline.gcode import Command, strip_comment
from pipeline.wire import Refused, fast, read

CHUNK = 64 * 1024
LOW_WATER = 512  # lines left before the streamer should read another chunk
_SOURCE_FILE = "source:file"

#: What `gcode_problem` looks at: the first chunk, which the streamer reads anyway. A binary
#: format shows in its first bytes (magic numbers, headers, NULs in lengths; git looks at 8000),
#: and slicer thumbnails, however long, are base64 text in comments.
SNIFF = CHUNK
BOM = b"\xef\xbb\xbf"
# Bytes text never holds: C0 controls but tab, LF, VT, FF, CR and ^Z (an old DOS end-of-file
# mark), and DEL.
_BINARY_BYTE = re.compile(rb"[\x00-\x08\x0e-\x19\x1b-\x1f\x7f]")
_NOT_ASCII = bytes(range(128))  # deleted by translate(), what is left is not ASCII
#: A block that is not UTF-8 passes as 8-bit text (latin-1 comments from an old slicer)
#: while at most this share of its bytes is not ASCII: G-code commands are ASCII.
LEGACY_TEXT_SHARE = 0.25


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
    #: The session pulls this job's lines (an SD print's lines the printer reads itself).
    streams = True

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

    def device_commands(self, moment: str) -> tuple[str, ...]:
        """Printer commands a job needs at `moment` (start, pause, resume, cancel): none
        for a streamed file (session/sd/job.py has the SD print's)."""
        return ()

    def start_at(self, pos: int, line: int) -> None:
        """Begin at byte `pos`, after file line `line` (a recovered print): the streamer
        feeds the file from that byte on."""
        self.read_pos = self.pos = pos
        self.text_line = line

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
        if not self.read_pos and chunk.startswith(BOM):
            chunk = chunk[len(BOM):]
            self.read_pos = self.pos = len(BOM)
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
            tags = frozenset((_SOURCE_FILE, f"filepos:{pos}", f"fileline:{self.text_line}"))
            cmd = Command.parse(text, tags=tags)
            if fast(text, cmd.gcode):
                return cmd
            try:  # the rules see the command the firmware will run (g01 is G1, m0 is M0)
                return Command.parse(read(text).canonical, tags=tags)
            except Refused:
                return cmd  # the wire refuses it with the reason, and the print fails there
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


def gcode_problem(first_block: bytes) -> str | None:
    """Why a file whose first SNIFF bytes are `first_block` is not G-code text, or None.

    Accepted: ASCII and UTF-8 (a BOM too), any line endings, and 8-bit text that is not UTF-8
    while little of it is not ASCII (LEGACY_TEXT_SHARE). An empty file is G-code without
    commands. Refused: Prusa's binary G-code, UTF-16, NUL and control bytes, and bytes that
    are neither UTF-8 nor mostly ASCII. A block cut inside a UTF-8 character is fine.
    """
    if first_block.startswith(b"GCDE") and b"\0" in first_block[4:10]:
        return ("it is binary G-code (.bgcode), which printpipe cannot stream; export "
                "plain-text G-code from the slicer")
    if first_block.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it is UTF-16 text; save it as UTF-8"
    found = _BINARY_BYTE.search(first_block)
    if found is not None:
        byte = found.group()[0]
        what = "NUL byte" if byte == 0 else f"control byte 0x{byte:02x}"
        return f"{what} at offset {found.start()}"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(first_block, final=False)
    except UnicodeDecodeError as exc:
        share = len(first_block.translate(None, _NOT_ASCII)) / len(first_block)
        if share > LEGACY_TEXT_SHARE:
            return (f"invalid UTF-8 at offset {exc.start} ({share:.0%} of the first "
                    f"{len(first_block)} bytes are not ASCII)")
    return None


def not_gcode(name: str, first_block: bytes) -> str | None:
    """`<name> is not a G-code file: <why>` (gcode_problem), or None when it is G-code."""
    problem = gcode_problem(first_block)
    return None if problem is None else f"{name} is not a G-code file: {problem}"
