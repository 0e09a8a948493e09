"""One upload of a stored file to the printer's SD card, sans-IO.

The streamer (link/printer.py) feeds the file's bytes (`feed`, b"" at the end) while
`wants_data`; the session pulls what goes out. In text mode (OctoPrint's way) it is `M28
<remote>`, every command of the file with line number and checksum in the send window (the
comments and blank lines stripped), `M29`. In binary mode it is `M28 B1`, then the
`BinaryTransfer` owns the link until the printer is back in text; the file's bytes go as they
are, each line checked on the way. Every line passes the session's `process` first (the
`comm.protocol.gcode.*` phases, tagged `source:sdupload`, and the wire guard): a refused line
fails the upload. A failed upload removes its half file (`M29` + `M30`, or the binary ABORT).

`result` is None while it runs, then "" (done) or the reason it failed. Pure: no IO.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from pipeline.config.schema import SdSpec
from pipeline.gcode import Command, strip_comment
from pipeline.session.filejob import CHUNK, FileJob, JobFile
from pipeline.session.sd.binary import BinaryTransfer
from pipeline.wire import Refused

UPLOAD_TAG = "source:sdupload"
_TRIGGER = frozenset({"trigger:sd_upload", UPLOAD_TAG})

#: What the session does with one upload line: the commands to store, or Refused.
Process = Callable[..., list[Command]]


class Stage(enum.Enum):
    WAITING = "waiting"      # the queues drain first
    TEXT = "text"            # M28 sent, lines going out
    CLOSING = "closing"      # M29 (and, failed, M30) sent: waiting for their oks
    SWITCHING = "switching"  # M28 B1 sent: waiting for its ok
    BINARY = "binary"        # the transfer owns the link
    DONE = "done"


def _nothing() -> None:
    pass


class SdUpload:
    def __init__(self, *, local: str, remote: str, size: int, binary: bool, spec: SdSpec,
                 process: Process, started: float) -> None:
        self.local, self.remote, self.size = local, remote, size
        self.binary_wanted = binary
        self.mode = "binary" if binary else "text"
        self.stage = Stage.WAITING
        self.started = started
        self.result: str | None = None
        self.transfer: BinaryTransfer | None = None
        self.switched = False        # the printer said "Switching to Binary Protocol"
        self.lines = 0               # commands handed out (text) or checked (binary)
        self._spec = spec
        self._process = process
        self._raw = bytearray()
        self._raw_eof = False
        self._partial = b""          # binary: the start of a line not yet checked
        self._line_no = 0            # binary: lines of the file checked
        self._text = FileJob(JobFile(local, local, size))
        self._text.on_hungry = self._hungry
        self._pending: list[Command] = []
        #: Set by the streamer: called when the bytes run low.
        self.on_hungry: Callable[[], None] = _nothing

    # ---- the streamer side -------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._raw += chunk
        else:
            self._raw_eof = True

    @property
    def eof(self) -> bool:
        return self._raw_eof or self.result is not None

    @property
    def wants_data(self) -> bool:
        return not self.eof and len(self._raw) < 2 * CHUNK

    def _hungry(self) -> None:
        if self._raw or self._raw_eof:
            self._to_text()
        self.on_hungry()

    @property
    def done_bytes(self) -> int:
        if self.transfer is not None:
            return self.transfer.sent_bytes
        return self._text.pos

    # ---- text mode -----------------------------------------------------------------------------
    def _to_text(self) -> None:
        job = self._text
        while self._raw and job.wants_data:
            job.feed(bytes(self._raw[:CHUNK]))
            del self._raw[:CHUNK]
        if self._raw_eof and not self._raw and not job.eof:
            job.feed(b"")

    def next_command(self, queues_empty: bool, in_flight: int) -> Command | None:
        """The next command of the upload, or None (nothing now, or it is done)."""
        st = self.stage
        if st is Stage.WAITING:
            if not queues_empty:
                return None
            if self.binary_wanted:
                self.stage = Stage.SWITCHING
                return Command.parse("M28 B1", tags=_TRIGGER)
            self.stage = Stage.TEXT
            return Command.parse(f"M28 {self.remote}", tags=_TRIGGER)
        if st is Stage.TEXT:
            return self._next_text()
        if st is Stage.CLOSING and self._pending:
            return self._pending.pop(0)
        if st is Stage.SWITCHING and not in_flight:
            self._switched()
        elif st is Stage.CLOSING and not in_flight:
            self.stage = Stage.DONE
            if self.result is None:
                self.result = ""
        return None

    def _next_text(self) -> Command | None:
        if self._pending:
            return self._pending.pop(0)
        job = self._text
        while True:
            self._to_text()
            cmd = job.next_command()
            if cmd is None:
                if job.done:
                    self.stage = Stage.CLOSING
                    return Command.parse("M29", tags=_TRIGGER)
                return None
            cmd = Command(cmd.line, cmd.gcode, cmd.subcode, None, _TRIGGER)
            try:
                out = self._process(cmd)
            except Refused as exc:
                return self.fail_text(f"line {job.text_line} of {self.local}: {exc}")
            self.lines += 1
            if out:
                self._pending = out[1:]
                return out[0]

    def fail_text(self, why: str) -> Command:
        """Stop a text upload: close the file and delete it."""
        self.result = why
        self._pending = [Command.parse(f"M30 {self.remote}", tags=_TRIGGER)]
        self.stage = Stage.CLOSING
        return Command.parse("M29", tags=_TRIGGER)

    # ---- binary mode ---------------------------------------------------------------------------
    def _switched(self) -> None:
        if not self.switched:  # the printer took `M28 B1` as a file name: text mode instead
            self.mode = "text"
            self._pending = [Command.parse("M29", tags=_TRIGGER),
                             Command.parse("M30 B1", tags=_TRIGGER),
                             Command.parse(f"M28 {self.remote}", tags=_TRIGGER)]
            self.stage = Stage.TEXT
            return
        self.stage = Stage.BINARY
        self.transfer = BinaryTransfer(self.remote, self._spec, self.started)

    def binary_feed(self) -> None:
        """Move checked bytes into the transfer while it is short of them."""
        t = self.transfer
        assert t is not None
        while t.error is None and t.pending < 4 * CHUNK and (
                self._raw or (self._raw_eof and not t.eof)):
            chunk = bytes(self._raw[:CHUNK])
            del self._raw[:CHUNK]
            try:
                t.feed(self._checked(chunk), eof=self._raw_eof and not self._raw)
            except Refused as exc:
                t.fail(str(exc))
                return
            if not self._raw_eof:
                self.on_hungry()

    def _checked(self, chunk: bytes) -> bytes:
        """The bytes to store for `chunk`: each whole line checked (and rewritten only when a
        stage changed it); the rest of a line waits for the next chunk."""
        data = self._partial + chunk
        if self._raw_eof and not self._raw:
            self._partial, lines = b"", data.split(b"\n")
            last = lines.pop() if lines else b""
            tail = [last] if last else []
        else:
            lines = data.split(b"\n")
            self._partial = lines.pop()
            tail = []
        out = []
        for raw in [*lines, *tail]:
            self._line_no += 1
            text = raw.decode("utf-8", "replace")
            text = strip_comment(text) if ";" in text else text.strip()
            if not text:
                out.append(raw)
                continue
            self.lines += 1
            cmd = Command.parse(text, tags=_TRIGGER)
            try:
                cmds = self._process(cmd, binary=True)
            except Refused as exc:
                raise Refused(f"line {self._line_no} of {self.local}: {exc}") from None
            if len(cmds) == 1 and cmds[0].line == text:
                out.append(raw)
            else:
                out.append("\n".join(c.line for c in cmds).encode("ascii", "replace"))
        joined = b"\n".join(out)
        return joined + b"\n" if lines and not tail else joined

    def binary_over(self) -> None:
        t = self.transfer
        assert t is not None
        self.stage = Stage.DONE
        self.result = t.error or ""
