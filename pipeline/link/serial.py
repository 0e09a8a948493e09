"""The serial link: trio tasks that only move bytes between a transport and the host core.

The reader feeds every chunk to `HostCore.receive_data` and writes whatever the core then
wants sent (the ok that frees the window usually releases the next line, so the hot path stays
in one task). The writer wakes for commands queued while the window was idle. The watchdog
sleeps until the core's deadline and lets the core apply its timeout rules. A temperature
poller queues M105 when the printer does not autoreport; the SD poller M27 during SD prints.
When the core fails (fatal error, M112, EOF) the link flushes the last bytes and closes: the
printer ends in a clean state.

When the host stops with a print running (`stop_for_exit`: SIGTERM, or the link torn down by
a crash, a second signal or an abandon), the file stops at once and every heater is switched
off through the normal wire path; torn down, the link's last act (`_last_act`) keeps reading
and writing for LAST_ACT seconds at most so that those commands reach the printer.
"""

from __future__ import annotations

import logging
import math

import trio

from pipeline.config.schema import ProfileSpec
from pipeline.errors import LinkBroken, LinkClosed
from pipeline.gcode import Command
from pipeline.link.transport import SerialTransport
from pipeline.session.core import HostCore
from pipeline.session.states import PrinterState

log = logging.getLogger("printpipe.link")

#: Seconds the link's last act may take to get the heaters switched off when it is torn down
#: with a print running (a printer that does not answer is let go after that).
LAST_ACT = 1.0
_EXIT_TAGS = frozenset({"trigger:exit"})


def heaters_off(profile: ProfileSpec) -> list[str]:
    """Every heater of `profile` off: M104 S0 per tool, M140 S0, M141 S0."""
    tools = 1 if profile.shared_nozzle else profile.extruders
    return ([f"M104 T{i} S0" for i in range(tools)] + ["M140 S0"] * profile.heated_bed
            + ["M141 S0"] * profile.heated_chamber)


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
        self._exit_heaters: list[Command] = []  # stop_for_exit's heater commands

    def stop_for_exit(self) -> bool:
        """The host stops with a print running: the file stops at once (the cancel path,
        `afterPrintCancelled` included; the journal is kept so `printpipe recover` resumes
        it) and, unless `serial.heaters_off_on_exit` is off, every heater off is queued ahead
        of anything else. False (and nothing done) when no print is running."""
        core = self.core
        jobs = core.jobs
        if not jobs.active or not core.operational:
            return False
        if jobs.state not in (PrinterState.CANCELLING, PrinterState.FINISHING):
            jobs.cancel(capture=False, shutdown=True)
        if core.config.serial.heaters_off_on_exit:
            manual = core.queues.manual
            for line in heaters_off(core.config.printer.profile):
                if core.enqueue(line, cmd_type=f"exit:{line}", tags=_EXIT_TAGS):
                    self._exit_heaters.append(manual[-1])
        return True

    def _exit_heaters_pending(self) -> bool:
        """stop_for_exit's heater commands are still queued or unacknowledged."""
        core = self.core
        return any(c in core.queues.manual for c in self._exit_heaters) or (
            bool(self._exit_heaters) and core.engine.in_flight > 0)

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

    async def _sd_poller(self) -> None:
        """M27 every `serial.sd.status_interval` s while an SD print runs (the card decides)."""
        sd = self.core.sd
        while True:
            await trio.sleep(sd.poll_interval())
            sd.poll()

    async def run(self, *, task_status: trio.TaskStatus[SerialLink] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until the core fails or the port breaks; always closes the port."""
        reason: str | None = None
        cut = False  # cancelled from outside (a disconnect, the host stopping, a crash)
        try:
            async with trio.open_nursery() as nursery:
                async def until_failed(fn) -> None:  # noqa: ANN001
                    await fn()
                    nursery.cancel_scope.cancel()
                for fn in (self._reader, self._writer, self._watchdog):
                    nursery.start_soon(until_failed, fn)
                nursery.start_soon(self._poller)
                nursery.start_soon(self._sd_poller)
                task_status.started(self)
                await self._flush()
        except LinkBroken as exc:
            reason = str(exc)
            log.warning("%s", exc)
        except LinkClosed:
            pass
        except BaseException as exc:
            cut = _only_cancelled(exc)
            raise
        finally:
            with trio.CancelScope(shield=True):
                if self.core.failed and not self.transport.closed:
                    try:
                        with trio.move_on_after(1):
                            await self._flush()
                    except (LinkBroken, LinkClosed):
                        pass
                elif cut and not self.transport.closed:
                    await self._last_act()
                await self.transport.aclose()
                self.core.disconnected(reason)
                self.closed.set()
                self._notify()

    async def _last_act(self) -> None:
        """Torn down with a print running (or its heaters-off still on the way): stop the
        file, switch the heaters off and keep the link going until they are acknowledged,
        LAST_ACT seconds at most. The print's remaining job commands are dropped."""
        core = self.core
        if not (self.stop_for_exit() or self._exit_heaters_pending()):
            return
        core.queues.job.clear()  # the cancel's own script will not get its turn
        core.jobs.source = None
        transport = self.transport
        done = False
        with trio.move_on_after(LAST_ACT):
            try:
                while not done:
                    out = core.data_to_send()
                    if out:
                        await transport.send_all(out)
                        core.on_written()
                    done = not self._exit_heaters_pending() or core.failed
                    if not done:
                        await trio.lowlevel.wait_readable(transport.fd)
                        data = transport.read_nowait()
                        if data is not None:
                            core.receive_data(data)
                            done = data == b""
            except (LinkBroken, LinkClosed, trio.ClosedResourceError):
                pass
        if not self._exit_heaters:
            log.warning("stopping with a print running: the file is stopped (the heaters stay "
                        "as they are: serial.heaters_off_on_exit is off)")
        elif self._exit_heaters_pending():
            log.warning("stopping with a print running: the printer did not take the "
                        "heaters-off commands within %g s", LAST_ACT)
        else:
            log.warning("stopping with a print running: the heaters are off")


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)
