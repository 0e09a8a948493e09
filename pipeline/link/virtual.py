"""Serving a VirtualFirmware on a pseudo-terminal (trio), so hosts open it like a USB printer.

`serve_virtual_printer` owns one pty pair: the host opens the slave path (or a symlink to it)
with any serial library; this side reads and writes the master and drives the sans-IO
firmware with `trio.current_time()`. A simulated unplug (the `disconnect_after` fault or
`VirtualPrinterHandle.disconnect()`) closes both ends, so the host sees EOF or EIO, and the
serve call returns. `run_standalone` serves forever (re-plugging after an unplug) for
`printpipe virtual --link PATH`.
"""

from __future__ import annotations

import functools
import math
import os
import termios
import tty
import typing

import attrs
import trio

from pipeline.errors import HostError
from pipeline.link.trace import private_file
from pipeline.virtual.firmware import FirmwareSpec, VirtualFirmware
from pipeline.virtual.marlin import make_firmware

_CHUNK = 4096
# How long a write may block (nobody reading the slave) before stale output is discarded.
_WRITE_STALL = 0.5
# Back-off after the master reported a hang-up (EIO) before reading again.
_HANGUP_BACKOFF = 0.05


@attrs.define(eq=False)
class VirtualPrinterHandle:
    """A running virtual printer: where to connect, its firmware model, and an unplug button.

    `port` is the path a host should open (the link if one was asked for, else the slave
    device); `device` is always the slave device (e.g. /dev/pts/5).
    """

    port: str
    device: str
    firmware: VirtualFirmware
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, alias="_scope")
    _gone: trio.Event = attrs.field(factory=trio.Event, alias="_gone")

    @property
    def unplugged(self) -> bool:
        return self._gone.is_set()

    async def disconnect(self) -> None:
        """Simulate pulling the USB cable: both pty ends close; returns once they are."""
        self._scope.cancel()
        await self._gone.wait()


def _make_link(link: str, target: str) -> None:
    """Point the symlink `link` at `target`, replacing an old symlink (never a real file).
    Raises HostError naming the path and the reason when it cannot."""
    if os.path.exists(link) and not os.path.islink(link):
        raise HostError(f"cannot make the link {link}: something that is not a symlink is "
                        "there (only symlinks are replaced); choose another --link path")
    try:
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(target, link)
    except OSError as exc:
        raise HostError(f"cannot make the link {link}: {exc.strerror or exc}; choose a "
                        "--link path in a folder you can write") from None


def _remove_link(link: str, target: str) -> None:
    """Remove `link` if it still points at our device (a newer server may own it now)."""
    try:
        if os.path.islink(link) and os.readlink(link) == target:
            os.unlink(link)
    except OSError:
        pass


async def _write(stream: trio.lowlevel.FdStream, data: bytes, slave_fd: int) -> None:
    """Write to the master; if nobody drains the slave, drop the stale output and retry once."""
    with trio.move_on_after(_WRITE_STALL):
        await stream.send_all(data)
        return
    termios.tcflush(slave_fd, termios.TCIFLUSH)
    with trio.move_on_after(_WRITE_STALL):
        await stream.send_all(data)


async def _pump(stream: trio.lowlevel.FdStream, firmware: VirtualFirmware,
                slave_fd: int) -> None:
    """Shuttle bytes between the master and the firmware until it asks to be unplugged."""
    while True:
        out = firmware.data_to_send(trio.current_time())
        if out:
            await _write(stream, out, slave_fd)
        if firmware.disconnect_requested:
            return
        deadline = firmware.next_deadline()
        with trio.move_on_at(math.inf if deadline is None else deadline):
            try:
                data = await stream.receive_some(_CHUNK)
            except trio.BrokenResourceError:
                # EIO: no slave fd open. We hold one, so this is transient; keep serving.
                await trio.sleep(_HANGUP_BACKOFF)
                continue
            if not data:
                await trio.sleep(_HANGUP_BACKOFF)
                continue
            firmware.receive_data(data, trio.current_time())


def _take_the_rest(stream: trio.lowlevel.FdStream, firmware: VirtualFirmware) -> None:
    """The printer is being unplugged: what the host wrote before that still reaches the
    firmware, as it would reach a real printer (a host's last words are often an M112)."""
    while True:
        try:
            data = os.read(stream.fileno(), _CHUNK)
        except OSError:  # nothing waiting (EAGAIN), or the slave is gone (EIO)
            return
        if not data:
            return
        firmware.receive_data(data, trio.current_time())


async def serve_virtual_printer(
    spec: FirmwareSpec, *, link: str | None = None,
    task_status: trio.TaskStatus[VirtualPrinterHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a fresh VirtualFirmware(spec) on a new pty until it is unplugged.

    `task_status.started` gets a VirtualPrinterHandle. The slave end is kept open here for
    the whole run, so a host closing and re-opening the port does not break the master.
    """
    master_fd, slave_fd = os.openpty()
    stream: trio.lowlevel.FdStream | None = None
    device = ""
    handle: VirtualPrinterHandle | None = None
    try:
        tty.setraw(slave_fd)  # raw, no echo: otherwise our output would echo back as input
        device = os.ttyname(slave_fd)
        if link is not None:
            _make_link(link, device)
        stream = trio.lowlevel.FdStream(master_fd)
        master_fd = -1  # owned by the stream now
        firmware = make_firmware(spec, now=trio.current_time())
        handle = VirtualPrinterHandle(link if link is not None else device, device, firmware)
        with handle._scope:
            task_status.started(handle)
            try:
                await _pump(stream, firmware, slave_fd)
            finally:
                _take_the_rest(stream, firmware)
    finally:
        if stream is not None:
            stream.close()
        if master_fd >= 0:
            os.close(master_fd)
        os.close(slave_fd)
        if link is not None and device:
            _remove_link(link, device)
        if handle is not None:
            handle._gone.set()


async def run_standalone(spec: FirmwareSpec, link: str, *, record: str | None = None) -> None:
    """Serve forever at `link`; after an unplug, plug a fresh printer back in a second later.

    With `record`, every command the printer accepts is appended to that file (one per line,
    flushed every 50 ms), so another process can check what arrived.
    """
    # A plain file on purpose: opened once before any task runs, closed in the finally below,
    # and _record's small appends must still flush while it is being cancelled.
    # It is the printer's traffic: its owner's only (0600).
    sink = private_file(record, "w", buffering=1 << 16) if record else None
    try:
        while True:
            async with trio.open_nursery() as nursery:
                handle: VirtualPrinterHandle = await nursery.start(
                    functools.partial(serve_virtual_printer, spec, link=link))
                print(f"virtual printer on {handle.device}, link {link}", flush=True)
                if sink is not None:
                    nursery.start_soon(_record, handle, sink)
            print("virtual printer unplugged; plugging back in 1 s", flush=True)
            await trio.sleep(1.0)
    finally:
        if sink is not None:
            sink.close()


async def _record(handle: VirtualPrinterHandle, sink: typing.TextIO) -> None:
    done = 0
    accepted = handle.firmware.accepted
    try:
        while not handle.unplugged:
            await trio.sleep(0.05)
            if len(accepted) > done:
                sink.write("\n".join(accepted[done:]) + "\n")
                sink.flush()
                done = len(accepted)
    finally:
        sink.write("".join(a + "\n" for a in accepted[done:]))
        sink.flush()
