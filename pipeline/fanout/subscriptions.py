"""Config subscriptions at run time: a bus subscriber that turns events into G-code commands
(through the pipeline, tagged `trigger:event`) and system commands (subprocesses).

System commands never go through a shell unless the entry says `shell: true`: the command was
split into arguments at load, and each placeholder value lands inside one argument. With a
shell, every value is shell-quoted. Each run has a timeout, runs beside the print under a
bounded limit, and its exit code and output are logged. When the bus closes (Shutdown was the
last event) running commands get a bounded grace period. A firing that cannot run (a missing
placeholder, a failing command) is logged with the subscription's name and line; the next
firing runs normally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import trio

from pipeline.config.sections import EventsSpec, SubscriptionSpec, SubscriptionType
from pipeline.errors import CommandRefused, ConfigError, ConfigErrors
from pipeline.events.names import CUSTOM_EVENT_RE, canonical
from pipeline.events.placeholders import (
    FiringContext,
    MissingPlaceholder,
    params,
    render,
    render_argv,
    split_argv,
)
from pipeline.fanout.bus import BusEvent, EventBus, Subscription

log = logging.getLogger("printpipe.subscriptions")

#: Output kept per command for the log (the end of it: that is where errors are).
OUTPUT_TAIL = 2000

SendGcode = Callable[[list[str], frozenset[str]], bool]


def check_custom_events(spec: EventsSpec, custom: Iterable[str]) -> None:
    """`plugin_<id>_<name>` subscriptions must name an event a stage registered."""
    registered = set(custom)
    errors = [ConfigError(f"unknown event {name!r}: no events.register_custom_events stage "
                          f"registers it (registered: {', '.join(sorted(registered)) or 'none'})",
                          path=sub.location.path, line=sub.location.line, key="event")
              for sub in spec.subscriptions for name in sub.events
              if CUSTOM_EVENT_RE.fullmatch(name) and name not in registered]
    if errors:
        raise ConfigErrors(errors)


class SubscriptionRunner:
    """Runs the enabled subscriptions of `spec` for events from `bus`.

    `send_gcode(lines, tags)` queues G-code (False when no printer is connected; raises
    CommandRefused when a line must not reach the printer); `context()` gives the host state
    the generic placeholders read.
    """

    def __init__(self, spec: EventsSpec, bus: EventBus, *, send_gcode: SendGcode,
                 context: Callable[[], FiringContext]) -> None:
        self.spec = spec
        self.bus = bus
        self.send_gcode = send_gcode
        self.context = context
        self._sub: Subscription | None = None
        self.update(spec)
        self._limit = trio.CapacityLimiter(spec.max_concurrent)
        self.waiting = 0
        self.started = 0
        self.finished = 0
        self.failed = 0
        self.skipped = 0

    def update(self, spec: EventsSpec) -> None:
        """Take new subscriptions (a config reload); commands already running go on."""
        by_event: dict[str, list[SubscriptionSpec]] = {}
        if spec.enabled:
            for sub in spec.subscriptions:
                if sub.enabled:
                    for name in sub.events:
                        by_event.setdefault(canonical(name), []).append(sub)
        self._argv = {cmd: split_argv(cmd) for sub in spec.subscriptions
                      if sub.type is SubscriptionType.SYSTEM and not sub.shell
                      for cmd in sub.commands}
        self.spec, self._by_event = spec, by_event
        if self._sub is not None:
            self._sub.events = frozenset(by_event) | {"Shutdown"}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, then handle events until the bus closes after Shutdown."""
        sub = self._sub = self.bus.subscribe("subscriptions", events=self._by_event, size=1024)
        try:
            async with trio.open_nursery() as commands:
                task_status.started()
                async for ev in sub:
                    self.handle(ev, commands)
                # Shutdown was delivered and the bus closed: let running commands finish,
                # bounded.
                commands.cancel_scope.deadline = trio.current_time() + self.spec.shutdown_grace
        finally:
            sub.close()  # (after a failure: a restart subscribes again)

    def handle(self, ev: BusEvent, commands: trio.Nursery) -> None:
        subs = self._by_event.get(ev.name)
        if not subs:
            return
        ctx = self.context()
        values = params(ev.name, ev.payload, ctx)
        for sub in subs:
            try:
                if sub.type is SubscriptionType.GCODE:
                    self._gcode(sub, ev, values)
                else:
                    self._system(sub, ev, values, commands)
            except MissingPlaceholder as exc:
                self.skipped += 1
                log.warning("%s skipped for %s: placeholder {%s} has no value in this event "
                            "(payload keys: %s)", sub.label, ev.name, exc.name,
                            ", ".join(sorted(ev.payload)) or "none")

    def _gcode(self, sub: SubscriptionSpec, ev: BusEvent, values: dict[str, Any]) -> None:
        lines = [render(cmd, values) for cmd in sub.commands]
        if sub.debug:
            log.info("%s for %s sends %s", sub.label, ev.name, lines)
        tags = frozenset({"trigger:event", f"event:{ev.name}"})
        try:
            sent = self.send_gcode(lines, tags)
        except CommandRefused as exc:  # a placeholder's value may not add a line, ...
            self.skipped += 1
            log.warning("%s for %s: G-code not sent: %s", sub.label, ev.name, exc)
            return
        if not sent:
            self.skipped += 1
            log.warning("%s for %s: no printer connected, G-code not sent", sub.label, ev.name)

    def _system(self, sub: SubscriptionSpec, ev: BusEvent, values: dict[str, Any],
                commands: trio.Nursery) -> None:
        if sub.shell:
            argvs = [["/bin/sh", "-c", render(cmd, values, quote=True)] for cmd in sub.commands]
        else:
            argvs = [render_argv(self._argv[cmd], values) for cmd in sub.commands]
        if self.waiting >= self.spec.max_waiting + self.spec.max_concurrent:
            self.skipped += 1
            log.warning("%s for %s dropped: %d system commands already waiting",
                        sub.label, ev.name, self.waiting)
            return
        self.waiting += 1
        commands.start_soon(self._run_list, sub, ev.name, argvs)

    async def _run_list(self, sub: SubscriptionSpec, event: str, argvs: list[list[str]]) -> None:
        async with self._limit:
            self.waiting -= 1
            self.started += 1
            try:
                for argv in argvs:  # in order; the first failure stops the rest
                    if not await self._run_one(sub, event, argv):
                        self.failed += 1
                        return
            except BaseException as exc:  # run_process raises a group of Cancelled when cut
                if not _only_cancelled(exc):
                    raise
                log.warning("%s for %s: still running when the grace period ended; killed",
                            sub.label, event)
                raise
            self.finished += 1

    async def _run_one(self, sub: SubscriptionSpec, event: str, argv: list[str]) -> bool:
        env = {**os.environ, **sub.env} if sub.env else None
        shown = argv if sub.debug else argv[:1]
        done = None
        with trio.move_on_after(sub.timeout):
            try:
                done = await trio.run_process(
                    argv, cwd=sub.cwd, env=env, check=False, stdin=b"",
                    capture_stdout=True, capture_stderr=True)
            except OSError as exc:
                log.warning("%s for %s: cannot run %s: %s", sub.label, event, shown, exc)
                return False
        if done is None:
            log.warning("%s for %s: %s timed out after %gs and was killed",
                        sub.label, event, shown, sub.timeout)
            return False
        out = (done.stdout + done.stderr).decode("utf-8", "replace")[-OUTPUT_TAIL:].strip()
        if done.returncode != 0:
            log.warning("%s for %s: %s exited with %d%s", sub.label, event, shown,
                        done.returncode, f": {out}" if out else "")
            return False
        log.info("%s for %s: %s exited with 0%s", sub.label, event, shown,
                 f": {out}" if out else "")
        return True


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
