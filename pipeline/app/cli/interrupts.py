"""Ctrl-C (and SIGTERM) for the commands that run a printer session: `send`, `print` and
`virtual`. The first one runs the command's own stop when it set one (`print` cancels the
print) or else ends the command at once (a session is closed without waiting for a printer
that may never answer); a second one quits at once (startup.quit_now), so Ctrl-C always ends a
command within a few seconds, whatever the printer does.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import attrs
import trio

from pipeline.app.startup import INTERRUPTED, quit_now


@attrs.define(eq=False)
class Interrupts:
    """What the command does at the first signal; `stop()` ends the command."""

    scope: trio.CancelScope
    on_first: Callable[[], None] | None = None
    count: int = 0

    def stop(self) -> None:
        self.scope.cancel()


async def run_interruptible(work: Callable[[Interrupts], Awaitable[int]]) -> int:
    """Run `work(interrupts)` and return its exit code, or INTERRUPTED when a signal ended it."""
    interrupts = Interrupts(trio.CancelScope())
    code = INTERRUPTED
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch, interrupts)
        with interrupts.scope:
            code = await work(interrupts)
        nursery.cancel_scope.cancel()
    return code


async def _watch(interrupts: Interrupts) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupts.count += 1
            if interrupts.count > 1:
                quit_now()
            if interrupts.on_first is not None:
                interrupts.on_first()
            else:
                interrupts.stop()
