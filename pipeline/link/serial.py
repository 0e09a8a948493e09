"""The serial link: trio tasks that only move bytes between a transport and the host core.

The reader feeds every chunk to `HostCore.receive_data` and writes whatever the core then
wants sent (the ok that frees the window usually releases the next line, so the hot path stays
in one task). The writer wakes for commands queued while the window was idle. The watchdog
sleeps until the core's deadline and lets the core apply its timeout rules. A temperature
poller queues M105 when the printer does not autoreport. When the core fails (fatal error,
M112, EOF) the link flushes the last bytes and closes: the printer ends in a clean state.
"""

from __future__ import annotations

import logging
import math

import trio

from pipeline.errors import LinkBroken, LinkClosed
from pipeline.link.transport import SerialTransport
from pipeline.session.core import HostCore

log = logging.getLogger("printpipe.link")


class SerialLink:
    def __init__(self, core: HostCore, transport: SerialTransport) -> None:
        self.core = core
        self.transport = transport
        core.wake = self.wake  # whatever is queued from outside the link wakes the writer
        self._writing = False
        self._kick = trio.Event()
        self._watch_at = math.inf
        self._watch_scope: trio.CancelScope | None = None
        self._waiters: list[trio.Event] = []
        self.closed = trio.Event()

    def wake(self) -> None:
        """Commands were queued from outside the link: let the writer look."""
        self._kick.set()
        self._poke_watchdog_if_needed()

    def _poke_watchdog_if_needed(self) -> None:
        if self.core.deadline < self._watch_at and self._watch_scope is not None:
            self._watch_scope.cancel()

    async def wait_changed(self) -> None:
        """Wait until the link processed input, a timeout, or closed (for callers' polling)."""
        ev = trio.Event()
        self._waiters.append(ev)
        await ev.wait()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for ev in waiters:
            ev.set()

    def _pump_nowait(self) -> bytes:
        """Write what the core has without awaiting; returns what the kernel did not take."""
        core = self.core
        transport = self.transport
        out = core.data_to_send()
        while out:
            n = transport.write_nowait(out)
            if n < len(out):
                return out[n:]
            core.on_written()
            if core.window_full:
                break  # the next ok brings the next line
            out = core.data_to_send()
        return b""

    async def _finish(self, rest: bytes) -> None:
        """The kernel buffer was full: await room for `rest`, then keep pumping."""
        self._writing = True
        try:
            while rest:
                await self.transport.send_all(rest)
                self.core.on_written()
                rest = self._pump_nowait()
        finally:
            self._writing = False

    async def _flush(self) -> None:
        if self._writing:
            return  # another task is finishing a write; it pumps again afterwards
        rest = self._pump_nowait()
        if rest:
            await self._finish(rest)

    async def _reader(self) -> None:
        core = self.core
        transport = self.transport
        wait_readable = trio.lowlevel.wait_readable
        fd = transport.fd
        while True:
            try:
                await wait_readable(fd)
            except trio.ClosedResourceError as exc:
                raise LinkClosed("port is closed", port=transport.port) from exc
            data = transport.read_nowait()
            if data is None:
                continue
            core.receive_data(data)
            if not self._writing:
                rest = self._pump_nowait()
                if rest:
                    await self._finish(rest)
            if self._waiters:
                self._notify()
            if core.failed:
                return
            if core.deadline < self._watch_at:
                self._poke_watchdog_if_needed()

    async def _writer(self) -> None:
        while True:
            await self._kick.wait()
            self._kick = trio.Event()
            await self._flush()
            if self._waiters:
                self._notify()
            if self.core.failed:
                return

    async def _watchdog(self) -> None:
        core = self.core
        while True:
            deadline = core.deadline
            self._watch_at = deadline
            with trio.CancelScope() as scope:
                self._watch_scope = scope
                await trio.sleep_until(deadline)
            self._watch_scope = None
            if trio.current_time() >= core.deadline:
                core.handle_timeout()
                await self._flush()
                self._notify()
                if core.failed:
                    return

    async def _poller(self) -> None:
        """M105 every interval unless the printer autoreports or is busy with a long command."""
        core = self.core
        while True:
            await trio.sleep(max(core.poll_interval(), 0.1))
            core.poll_temperature()

    async def run(self, *, task_status: trio.TaskStatus[SerialLink] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until the core fails or the port breaks; always closes the port."""
        reason: str | None = None
        try:
            async with trio.open_nursery() as nursery:
                async def until_failed(fn) -> None:  # noqa: ANN001
                    await fn()
                    nursery.cancel_scope.cancel()
                for fn in (self._reader, self._writer, self._watchdog):
                    nursery.start_soon(until_failed, fn)
                nursery.start_soon(self._poller)
                task_status.started(self)
                await self._flush()
        except LinkBroken as exc:
            reason = str(exc)
            log.warning("%s", exc)
        except LinkClosed:
            pass
        finally:
            with trio.CancelScope(shield=True):
                if self.core.failed and not self.transport.closed:
                    try:
                        with trio.move_on_after(1):
                            await self._flush()
                    except (LinkBroken, LinkClosed):
                        pass
                await self.transport.aclose()
                self.core.disconnected(reason)
                self.closed.set()
                self._notify()
