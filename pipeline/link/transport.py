"""The serial transport: opens a port with trio-serial and moves bytes on its file descriptor.

trio-serial does the termios work (raw mode, any baud rate including 250000, exclusive lock,
hang-up on close). Its `send_all` waits for writability before every write, an extra trip
through trio's scheduler per G-code line; on the hot path we write the fd directly and only
wait when the kernel buffer is full, and read after `wait_readable`. OS errors, EOF and
trio's closed/broken errors all become LinkBroken/LinkClosed here and nowhere else.
"""

from __future__ import annotations

import errno
import glob
import os
import termios

import trio
from trio_serial import SerialStream
from trio_serial.posix import PosixSerialStream

from pipeline.errors import LinkBroken, LinkClosed

#: Device names scanned for port `auto`, as OctoPrint does on POSIX.
PORT_GLOBS = ("/dev/ttyUSB*", "/dev/ttyACM*", "/dev/tty.usb*", "/dev/cu.*", "/dev/cuaU*",
              "/dev/rfcomm*", "/dev/serial/by-id/*")
#: Baud rates tried for baudrate 0 (auto), most likely first.
BAUD_CANDIDATES = (115200, 250000, 230400, 57600, 38400, 19200, 9600)


def candidate_ports() -> list[str]:
    seen: dict[str, None] = {}
    for pattern in PORT_GLOBS:
        for path in sorted(glob.glob(pattern)):
            seen.setdefault(os.path.realpath(path) if "by-id" in path else path)
    return list(seen)


class SerialTransport:
    """An open port. `receive_some` returns b"" only at EOF; errors raise LinkBroken."""

    def __init__(self, stream: PosixSerialStream, port: str) -> None:
        self.stream = stream
        self.port = port
        self._fd = stream.fd
        self.closed = False

    @property
    def fd(self) -> int:
        return self._fd

    def read_nowait(self, max_bytes: int = 4096) -> bytes | None:
        """What the port has now (after `wait_readable`): b"" at EOF, None if nothing yet."""
        try:
            return os.read(self._fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            if self.closed:
                raise LinkClosed("port is closed", port=self.port) from exc
            if exc.errno == errno.EIO:
                return b""
            raise LinkBroken(f"read failed: {exc}", port=self.port) from exc

    def write_nowait(self, data: bytes) -> int:
        """Write what the kernel takes now; returns how many bytes that was."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if self.closed:
                raise LinkClosed("port is closed", port=self.port) from exc
            raise LinkBroken(f"write failed: {exc}", port=self.port) from exc

    async def receive_some(self, max_bytes: int = 4096) -> bytes:
        if self.closed:
            raise LinkClosed("port is closed", port=self.port)
        try:
            await trio.lowlevel.wait_readable(self._fd)
            return os.read(self._fd, max_bytes)
        except BlockingIOError:
            return await self.receive_some(max_bytes)
        except (trio.ClosedResourceError, OSError) as exc:
            if self.closed:
                raise LinkClosed("port is closed", port=self.port) from exc
            if isinstance(exc, OSError) and exc.errno == errno.EIO:
                return b""  # a pty whose other side went away, a USB device unplugged
            raise LinkBroken(f"read failed: {exc}", port=self.port) from exc

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self._fd
        try:
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(fd)
                    continue
                view = view[n:]
        except (trio.ClosedResourceError, OSError) as exc:
            if self.closed:
                raise LinkClosed("port is closed", port=self.port) from exc
            raise LinkBroken(f"write failed: {exc}", port=self.port) from exc

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.stream.aclose()


async def open_port(port: str, baudrate: int, *, exclusive: bool = True,
                    hangup_on_close: bool = True) -> SerialTransport:
    """Open `port` at `baudrate`. A missing or unusable port raises LinkBroken."""
    stream = SerialStream(port, baudrate=baudrate, exclusive=exclusive)
    # trio-serial picks its class per platform at import; every POSIX one derives from
    # PosixSerialStream, the class that has the fd this transport reads and writes.
    assert isinstance(stream, PosixSerialStream)
    try:
        await stream.aopen()
        if not hangup_on_close:
            await stream.set_hangup(False)
    except (OSError, termios.error) as exc:
        await stream.aclose()
        raise LinkBroken(f"cannot open port: {_open_problem(exc)}", port=port) from exc
    return SerialTransport(stream, port)


#: What to do about the usual reasons a port does not open.
_NEXT_STEP = {
    errno.ENOENT: "no such device: is the printer plugged in and switched on? "
                  "(ls /dev/serial/by-id/ lists what is connected)",
    errno.EACCES: "permission denied: add the user to the dialout group "
                  "(sudo usermod -aG dialout $USER, then log in again)",
    errno.EBUSY: "the port is in use by another program (OctoPrint?)",
    errno.EAGAIN: "the port is locked by another program (OctoPrint?)",  # its exclusive lock
}


def _open_problem(exc: BaseException) -> str:
    err = exc.errno if isinstance(exc, OSError) else None
    return _NEXT_STEP.get(err, str(exc)) if err is not None else str(exc)
