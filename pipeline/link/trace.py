"""The serial trace (`serial.log: true`, as OctoPrint's serial.log): every line to and from the
printer with its time, in a file that rotates at `serial.log_size` bytes (one older file is
kept), for debugging a printer.

Only a session with the trace on pays for it: `TracingTransport` replaces the transport then,
and the plain one has no check on its hot path. The file is written by the logging module's
rotating handler, a blocking write per line: that is why the trace is off by default. It holds
all the printer's traffic, so it is its owner's only (0600), as is every other file here that
records traffic (`private_file`: the virtual printer's record too).
"""

from __future__ import annotations

import io
import logging
import os
import typing
from logging.handlers import RotatingFileHandler
from typing import Any

from pipeline.link.transport import SerialTransport

#: A partial line longer than this is written as it is (a printer sending garbage).
_MAX_PARTIAL = 4096


def private_file(path: str, mode: str, **kwargs: Any) -> io.TextIOWrapper:
    """`open(path, mode)` (text, "w" or "a") for its owner only: created 0600, and an existing
    file (made before, or under another umask) set to 0600 too."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return typing.cast(io.TextIOWrapper, open(fd, mode, **kwargs))


class _PrivateRotatingHandler(RotatingFileHandler):
    def _open(self) -> io.TextIOWrapper:  # each file it opens, the first and those after a rollover
        return private_file(self.baseFilename, self.mode, encoding=self.encoding,
                            errors=self.errors)


class SerialTrace:
    """Lines, split from the chunks the port moves, written with a time and a direction."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self._handler = _PrivateRotatingHandler(path, maxBytes=max_bytes, backupCount=1,
                                                encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s - %(message)s"))
        # a logger of its own, outside the tree: nothing else writes to or from it
        self._log = logging.Logger("printpipe.serial")  # noqa: LOG001 (one per trace file)
        self._log.addHandler(self._handler)
        self._partial = {"Send": b"", "Recv": b""}

    def note(self, text: str) -> None:
        self._log.info("%s", text)

    def data(self, direction: str, data: bytes) -> None:
        """`data` went `direction` ("Send" or "Recv"): write its complete lines."""
        *lines, rest = (self._partial[direction] + data).split(b"\n")
        if len(rest) > _MAX_PARTIAL:
            lines.append(rest)
            rest = b""
        self._partial[direction] = rest
        for line in lines:
            self._log.info("%s: %s", direction,
                           line.rstrip(b"\r").decode("utf-8", "backslashreplace"))

    def close(self) -> None:
        self._handler.close()


class TracingTransport(SerialTransport):
    """An open port whose every byte in and out also goes to a SerialTrace."""

    def __init__(self, plain: SerialTransport, trace: SerialTrace) -> None:
        super().__init__(plain.stream, plain.port)
        self.trace = trace

    def read_nowait(self, max_bytes: int = 4096) -> bytes | None:
        data = super().read_nowait(max_bytes)
        if data:
            self.trace.data("Recv", data)
        return data

    def write_nowait(self, data: bytes) -> int:
        n = super().write_nowait(data)
        if n:
            self.trace.data("Send", data[:n])
        return n

    async def receive_some(self, max_bytes: int = 4096) -> bytes:
        data = await super().receive_some(max_bytes)
        self.trace.data("Recv", data)
        return data

    async def send_all(self, data: bytes) -> None:
        await super().send_all(data)
        self.trace.data("Send", data)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.trace.note("Connection closed")
            self.trace.close()
