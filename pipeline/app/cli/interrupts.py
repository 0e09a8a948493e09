"""Ctrl-C (and SIGTERM) for the commands that run a printer session: `send`, `print` and
`virtual`. The first one runs the command's own stop when it set one (`print` cancels the
print at Ctrl-C, and stops it for `printpipe recover` at SIGTERM: `on_term`) or else ends the
command at once (a session is closed without waiting for a printer that may never answer); a
second one quits at once (startup.quit_now) after the command's `last_words` (the heaters off
of a print still running, bounded), so a signal always ends a command within a few seconds,
whatever the printer does.
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
    #: What SIGTERM does instead of `on_first`, when set.
    on_term: Callable[[], None] | None = None
    #: Awaited (bounded by the caller) before a second signal quits.
    last_words: Callable[[], Awaitable[object]] | None = None
    count: int = 0
    terminated: bool = False  # the first signal was a SIGTERM handled by on_term

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
        async for signum in signals:
            interrupts.count += 1
            if interrupts.count > 1:
                if interrupts.last_words is not None:
                    await interrupts.last_words()
                quit_now()
            if signum == signal.SIGTERM and interrupts.on_term is not None:
                interrupts.terminated = True
                interrupts.on_term()
            elif interrupts.on_first is not None:
                interrupts.on_first()
            else:
                interrupts.stop()
