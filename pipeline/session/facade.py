"""The `comm_instance` handed to OctoPrint-style handlers: a small documented facade of the
printer session, not OctoPrint's MachineCom. See README "Writing handlers" for the contract.

Handlers run inside the send and receive paths, so everything here is synchronous and cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs

from pipeline.events.names import Event
from pipeline.session.core import HostCore
from pipeline.session.jobs import JobStateError


class CommFacade:
    """What a handler may use: send commands, read state, profile, position and temperatures,
    fire an event, log."""

    def __init__(self, core: HostCore) -> None:
        self._core = core
        self._logger = logging.getLogger("printpipe.handlers")

    def send(self, commands: str | Iterable[str], *, tags: Iterable[str] = ()) -> None:
        """Queue one or more commands; they pass the whole pipeline, tagged `source:plugin`."""
        if isinstance(commands, str):
            commands = [commands]
        all_tags = frozenset(tags) | {"source:plugin"}
        for c in commands:
            self._core.enqueue(c, tags=all_tags)

    # OctoPrint handlers commonly call these MachineCom names; keep them as aliases.
    def sendCommand(self, cmd: str, cmd_type: str | None = None,  # noqa: N802
                    tags: Iterable[str] = (), **_: Any) -> None:
        self._core.enqueue(cmd, cmd_type=cmd_type, tags=frozenset(tags) | {"source:plugin"})

    def setPause(self, pause: bool, **_: Any) -> None:  # noqa: N802
        """Pause (True) or resume (False) the print, as MachineCom.setPause does."""
        try:
            if pause:
                self._core.jobs.pause()
            else:
                self._core.jobs.resume()
        except JobStateError as exc:
            self._logger.info("setPause(%s) ignored: %s", pause, exc)

    def fire_event(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Publish an event (a catalogue name or a registered custom one)."""
        if isinstance(name, Event):
            self._core.fire(name, payload or {})
            return
        try:
            event: Any = Event(name)
        except ValueError:
            event = name
        self._core.fire(event, payload or {})

    @property
    def state(self) -> str:
        """The printer state's display string (`Operational`, `Printing`, ...)."""
        return self._core.state.value

    def getStateString(self) -> str:  # noqa: N802
        return self._core.state.value

    def isOperational(self) -> bool:  # noqa: N802
        return self._core.operational

    def isPrinting(self) -> bool:  # noqa: N802
        return self._core.jobs.source is not None

    @property
    def printer_profile(self) -> dict[str, Any]:
        return attrs.asdict(self._core.config.printer.profile)

    @property
    def current_tool(self) -> int:
        """The active tool as the host last sent it (T<n>)."""
        return self._core.tracker.tool

    @property
    def current_z(self) -> float | None:
        """The last Z the host sent in a G0/G1 (or read from M114); None if unknown."""
        return self._core.tracker.z

    @property
    def last_position(self) -> dict[str, float | None]:
        return self._core.tracker.position_payload()

    @property
    def last_temperatures(self) -> dict[str, dict[str, float | None]]:
        return self._core.tracker.temperature_payload()

    @property
    def firmware_name(self) -> str | None:
        return self._core.engine.firmware_name

    @property
    def capabilities(self) -> dict[str, bool]:
        return dict(self._core.engine.capabilities)

    @property
    def logger(self) -> logging.Logger:
        return self._logger
