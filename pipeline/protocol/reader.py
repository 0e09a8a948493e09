"""The reply reader, one of the engine's parts: bytes from the printer cut into lines, each
line read for what it is (ok, busy, resend request, error, action, anything else), error
messages joined with their continuation line, and the firmware report (capabilities, M115
info, content lines) kept up to date.

It owns what reading needs (the partial line, an error waiting for its second line, the
report) and changes nothing else: the engine applies what `read` says to its other parts.
Plain `ok` lines never come here (the engine's hot path takes them straight from the bytes).
Pure: no IO, no trio, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from pipeline.protocol import replies
from pipeline.protocol.report import FirmwareReport

MAX_LINE = 4096  # a reply line longer than this is garbage (baud mismatch, reset noise)


class Reply(enum.Enum):
    """What a line is (the value `read` returns with it)."""

    BUSY = "busy"          # busy protocol keep-alive
    OK = "ok"              # an ok (replies.OkFields) or `wait` (None)
    RESEND = "resend"      # a resend request (the line number, -1 without)
    ERROR = "error"        # an error message, joined with its continuation when it has one
    ACTION = "action"      # `//action:<name> <params>` ((name, params))
    DEBUG = "debug"        # any other `//` line
    PARTIAL = "partial"    # the first line of a two-line error: wait for the next
    CONTENT = "content"    # anything else: temperatures, positions, capabilities, M115...


class ReplyReader:
    __slots__ = ("_pending_error", "buffer", "hook", "plain", "report")

    def __init__(self, hook: Callable[[str], str | None] | None = None) -> None:
        self.buffer = bytearray()  # a partial line
        self.hook = hook           # the `received` hook: may rewrite or drop a line
        self.report = FirmwareReport()
        self._pending_error: str | None = None
        #: A bare `ok` may be taken straight from the bytes: no hook, no error waiting.
        self.plain = hook is None

    def lines(self, data: bytes) -> list[bytes]:
        """The whole lines `data` completes (line endings stripped); keeps the rest."""
        buf = self.buffer
        buf += data
        out: list[bytes] = []
        while True:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE:
                    del buf[:]
                return out
            out.append(bytes(buf[:i]).rstrip(b"\r"))
            del buf[:i + 1]

    def decode(self, raw: bytes) -> str:
        """The line as text, through the hook ("" when it is dropped or empty)."""
        line = raw.decode("utf-8", "replace").strip()
        if self.hook is not None:
            hooked = self.hook(line)
            line = hooked.strip() if hooked else ""
        return line

    def read(self, line: str) -> tuple[Reply, object]:
        """What `line` (decoded, not empty) is."""
        if replies.is_busy(line):
            return Reply.BUSY, None
        if self._pending_error is not None:
            text, self._pending_error = replies.join_error(self._pending_error, line), None
            self.plain = self.hook is None
            return Reply.ERROR, text
        if replies.is_debug(line):
            action = replies.parse_action(line)
            return (Reply.DEBUG, None) if action is None else (Reply.ACTION, action)
        err = replies.error_text(line)
        if err is not None:
            if replies.error_needs_next_line(err):
                self._pending_error = err
                self.plain = False
                return Reply.PARTIAL, None
            return Reply.ERROR, err
        fields = replies.parse_ok(line)
        if fields is not None or replies.is_wait(line):
            return Reply.OK, fields
        n = replies.parse_resend(line)
        if n is not None:
            return Reply.RESEND, n
        return Reply.CONTENT, None
