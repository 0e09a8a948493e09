"""One printer's session lifecycle: opening the printer session (a task of the printer's own
nursery), watching it (the link closing, the journal writer), ending it in order or at once,
and what its end leaves (the error the status shows); and what scripts render to with no
session (`offline_core`).

A failure inside the session that is not the printer's (a bug: an exception out of a stage
handler that escapes, a broken task) ends this session only: it is logged with the printer's
name and its traceback, the status says why, and the connection keeper (autoconnect.py)
connects again. Nothing of it reaches the printer's nursery, so the other printers of the
service print on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from pipeline.app.printers.recovery import Recovery
from pipeline.app.supervise import what_failed
from pipeline.config.reader import HostConfig
from pipeline.errors import HostError
from pipeline.hooks.chain import Pipeline
from pipeline.link.printer import Printer, load_scripts
from pipeline.link.serial import LAST_ACT
from pipeline.session.core import HostCore

log = logging.getLogger("printpipe.service")

#: Opens the printer session with the config of the moment.
Opener = Callable[[], AbstractAsyncContextManager[Printer]]


class PrinterSession:
    def __init__(self, label: str, nursery: trio.Nursery, recovery: Recovery, opener: Opener, *,
                 on_open: Callable[[Printer], None], on_end: Callable[[], None],
                 failure: str | None = None) -> None:
        """`label` prefixes log lines ("printer NAME: ", or "" for a single printer);
        `failure` is what ended the printer's previous run, shown until it connects."""
        self._label = label
        self._nursery = nursery
        self._recovery = recovery
        self._opener = opener
        self._on_open = on_open
        self._on_end = on_end
        self.printer: Printer | None = None
        self.last_error: str | None = failure
        #: Whether a printer session is wanted: connect() sets it, disconnect() clears it
        #: (the connection keeper reconnects while it holds: autoconnect.py).
        self.wanted = False
        self._stop: trio.Event | None = None
        self._ended: trio.Event | None = None

    @property
    def connecting(self) -> bool:
        return self.printer is None and self._ended is not None and not self._ended.is_set()

    async def connect(self) -> None:
        """Open the printer session; raises LinkBroken when the printer cannot be reached,
        JobStateError while another connect is still under way."""
        from pipeline.session.jobs import JobStateError
        self.wanted = True
        if self.printer is not None:
            return
        if self.connecting:
            raise JobStateError("the printer is connecting")
        self._stop, self._ended = trio.Event(), trio.Event()
        await self._nursery.start(self._run, self._stop, self._ended)

    async def _run(self, stop: trio.Event, ended: trio.Event, *,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with self._opener() as printer:
                self.printer, started = printer, True
                self._on_open(printer)
                self.last_error = None
                printer.core.journal.enabled = True  # polled by recovery.follow below
                task_status.started()
                async with trio.open_nursery() as watch:
                    watch.start_soon(_cancel_when, stop, watch.cancel_scope)
                    watch.start_soon(_cancel_when, printer.link.closed, watch.cancel_scope)
                    watch.start_soon(self._recovery.follow, printer.core.journal)
                self.last_error = printer.core.error
        except HostError as exc:
            if not started:
                raise
            self.last_error = str(exc)
            log.error("%sprinter session ended: %s", self._label, exc)
        except Exception as exc:  # the boundary: a bug ends this printer's session only
            if not started:
                raise
            self.last_error = f"the printer session failed: {what_failed(exc)}"
            log.error("%s%s; reconnecting", self._label, self.last_error, exc_info=exc)
        finally:
            if started and self.printer is not None:
                await self._recovery.flush(self.printer.core.journal)
            self.printer = None
            self._on_end()
            ended.set()

    def stop_for_exit(self) -> bool:
        """A running print stops at once (the cancel path, heaters off, journal kept); False
        when none runs."""
        self.wanted = False
        return self.printer is not None and self.printer.stop_for_exit()

    async def shutdown(self, grace: float) -> None:
        """Stop a running print, then disconnect in order; what is left after `grace`
        seconds is cut (the link's last act still gets the heaters off)."""
        self.stop_for_exit()
        with trio.move_on_after(grace):
            await self.disconnect()
        if self.printer is not None:
            log.warning("%sthe printer did not finish its stop within %g s: disconnecting",
                        self._label, grace)
            await self.cut(LAST_ACT + 1)

    async def cut(self, bound: float) -> None:
        """Close the link at once (`abandon`): its last act still switches the heaters off of
        a print running; wait for that, `bound` seconds at most."""
        self.abandon()
        with trio.move_on_after(bound):
            await self.wait_end()

    async def disconnect(self) -> None:
        """Orderly: beforePrinterDisconnected runs, the queue drains (bounded), link closes."""
        self.wanted = False
        if self._stop is not None and self._ended is not None and self.printer is not None:
            self._stop.set()
            await self._ended.wait()

    def abandon(self) -> None:
        """Close the link at once, without beforePrinterDisconnected or draining the queue."""
        self.wanted = False
        if self.printer is not None:
            self.printer.nursery.cancel_scope.cancel()

    async def wait_end(self) -> None:
        """Wait until the session (open or connecting) has ended; at once without one."""
        if self._ended is not None:
            await self._ended.wait()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def offline_core(config: HostConfig, pipeline: Pipeline) -> HostCore:
    """A host core with no printer behind it: what scripts render to without a printer."""
    return HostCore(config, pipeline, clock=lambda: 0.0, scripts=load_scripts(config))


def render_script(core: HostCore, name: str, context: Mapping[str, Any]) -> list[str]:
    """The lines script `name` renders to in `core`'s state. Raises LookupError when no
    script (and no `comm.protocol.scripts` stage) has the name, ScriptError when it breaks."""
    if not core.scripts.has(name):
        known = ", ".join(core.scripts.names()) or "none"
        raise LookupError(f"no script named {name!r} (known: {known})")
    return [cmd.line for cmd in core.scripts.render(name, context)]
