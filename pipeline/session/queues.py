"""The session's command queues, and the narrow interfaces its parts queue and publish with.

- the manual queue: commands from the API, scripts outside jobs, reactions; OctoPrint's rule
  holds: a command whose `cmd_type` is already queued is dropped;
- the job queue: commands that belong to the job's sequence (the hello of a print, scripts,
  position captures) and `Marker`s, which run once everything before them is acknowledged, so
  a state change follows the printer, not the queueing.

The file being printed is not queued here: the session pulls its lines from the job's source
only when both queues are empty. Pure: no IO, no trio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from pipeline.gcode import NO_TAGS, Command


@attrs.frozen
class Marker:
    """A job-queue entry that runs `fn` once every command before it is acknowledged (and
    `until()` is true, when given: a hold, e.g. while a steady timelapse frame is shot)."""

    fn: Callable[[], None]
    until: Callable[[], bool] | None = None


#: How the session's parts publish an event: `fire(event, payload)`.
Publish = Callable[[Any, "dict[str, Any] | None"], None]


class CommandSink(Protocol):
    """How the session's parts queue commands: through the queuing phase and the rules."""

    def enqueue(self, line: str | Command, *, tags: frozenset[str] = NO_TAGS,
                cmd_type: str | None = None, part_of_job: bool = False) -> bool: ...

    def add_marker(self, fn: Callable[[], None],
                   until: Callable[[], bool] | None = None) -> None: ...

    def drop_file_commands(self) -> None: ...


class CommandQueues:
    def __init__(self) -> None:
        self.manual: deque[Command] = deque()
        self.job: deque[Command | Marker] = deque()
        self._types: set[str] = set()

    @property
    def empty(self) -> bool:
        return not self.manual and not self.job

    def put(self, cmd: Command, *, part_of_job: bool = False) -> bool:
        """Queue `cmd`; False when a command of its `cmd_type` is already queued."""
        t = cmd.cmd_type
        if t is not None:
            if t in self._types:
                return False
            self._types.add(t)
        (self.job if part_of_job else self.manual).append(cmd)
        return True

    def put_first(self, cmds: list[Command]) -> None:
        """Put the rest of an expanded file line ahead of everything else in the job queue."""
        self.job.extendleft(reversed(cmds))

    def add_marker(self, fn: Callable[[], None],
                   until: Callable[[], bool] | None = None) -> None:
        self.job.append(Marker(fn, until))

    def take(self, in_flight: int) -> Command | None:
        """The next queued command, running the markers that are due on the way.

        None when both queues are empty, or when a marker still waits for acknowledgements
        (then `job` is not empty and nothing else may go out before it).
        """
        if self.manual:
            return self._taken(self.manual.popleft())
        job = self.job
        while job:
            item = job[0]
            if isinstance(item, Marker):
                if in_flight or (item.until is not None and not item.until()):
                    return None
                job.popleft()
                item.fn()
                continue
            job.popleft()
            return self._taken(item)
        return None

    def _taken(self, cmd: Command) -> Command:
        if cmd.cmd_type is not None:
            self._types.discard(cmd.cmd_type)
        return cmd

    def drop_file_commands(self) -> None:
        """A cancel: forget file commands still waiting in the job queue."""
        self.job = deque(c for c in self.job
                         if isinstance(c, Marker) or "source:file" not in c.tags)

    def clear(self) -> None:
        """Forget every queued command (the printer reset itself)."""
        self.manual.clear()
        self.job.clear()
        self._types.clear()
