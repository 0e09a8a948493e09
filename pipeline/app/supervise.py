"""Supervision for the service's tasks that are not the printer's: the HTTP server, the event
subscribers (config subscriptions, the print log and history), the MQTT bridge, background
file analyses and system commands. Each runs `supervised`: a failure is caught at its
boundary, logged in one line naming what failed (the traceback only at debug level), and the
task starts again after a back-off (or stays stopped), so no such failure reaches the nursery
that also holds the printer's tasks. A cancel passes through untouched; so does a failure
before the task reported itself started (`nursery.start`: the caller sees why it could not
start).

`Supervisor` is a nursery whose `start_soon` and `start` supervise what they run: it can be
handed to code that takes a nursery for background work.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("printpipe.service")

#: Seconds before a failed task starts again; doubled at each failure up to RESTART_MAX, and
#: back to RESTART_MIN once it has run RESTART_MAX seconds without failing.
RESTART_MIN = 1.0
RESTART_MAX = 30.0


def what_failed(exc: BaseException) -> str:
    """One line: the exception (the first of a group) and where it was raised."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (at {os.path.basename(f.filename)}:{f.lineno} in {f.name})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


class _Started:
    """The task_status handed to a supervised task: remembers whether it started."""

    def __init__(self, status: trio.TaskStatus[Any]) -> None:
        self._status = status
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:  # a restarted task reports nothing: its first start did
            self.done = True
            self._status.started(value)


async def supervised(name: str, fn: Callable[..., Awaitable[object]], *args: Any,
                     restart: bool = True, started: bool = False,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run `fn(*args)` as the service task `name`, until it returns. An Exception out of it
    is logged in one line; then it starts again after the back-off (`restart`) or stays
    stopped. With `started` (for `nursery.start`) `fn` takes a task_status, and a failure
    before it called `started()` is raised to the caller."""
    status = _Started(task_status)
    delay = RESTART_MIN
    while True:
        began = trio.current_time()
        try:
            if started:
                await fn(*args, task_status=status)
            else:
                await fn(*args)
            return
        except Exception as exc:  # the boundary: nothing of this task reaches the printer's
            if started and not status.done:
                raise
            if trio.current_time() - began >= RESTART_MAX:
                delay = RESTART_MIN
            then = f"starting it again in {delay:g} s" if restart else "it stays stopped"
            log.error("%s failed: %s; %s (the printer is not affected)", name,
                      what_failed(exc), then)
            log.debug("%s failed", name, exc_info=exc)
        if not restart:
            return
        await trio.sleep(delay)
        delay = min(delay * 2, RESTART_MAX)


class Supervisor:
    """A nursery whose tasks run `supervised`, as `name` (else named after their function)."""

    def __init__(self, nursery: trio.Nursery, name: str | None = None, *,
                 restart: bool = False) -> None:
        self.nursery = nursery
        self.name = name
        self.restart = restart
        self.cancel_scope = nursery.cancel_scope

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: Any,
                   name: str | None = None) -> None:
        self.nursery.start_soon(_named(supervised, name or self.name or _name(fn), fn, *args,
                                       restart=self.restart))

    async def start(self, fn: Callable[..., Awaitable[object]], *args: Any,
                    name: str | None = None) -> Any:
        return await self.nursery.start(_named(supervised, name or self.name or _name(fn), fn,
                                               *args, restart=self.restart, started=True))


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _named(fn: Callable[..., Awaitable[object]], *args: Any,
           **kwargs: Any) -> Callable[..., Awaitable[object]]:
    async def run(**more: Any) -> None:
        await fn(*args, **kwargs, **more)
    return run
