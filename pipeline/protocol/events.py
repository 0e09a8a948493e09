"""What the protocol engine tells its owner: frozen event values and the link state enum.

The engine (engine.py) returns these from `receive_data()` and `handle_timeout()`; the
session core reacts to them. Plain `ok` lines produce no event at all (the hot path).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from pipeline.protocol.replies import Position


class LinkState(enum.Enum):
    """The connection's own state (the printer's states live in pipeline/session/states.py)."""

    OFFLINE = "Offline"
    CONNECTING = "Connecting"
    OPERATIONAL = "Operational"
    ERROR = "Error"


class ErrorReason(enum.Enum):
    """Why the engine gave up (OctoPrint's error reasons)."""

    FIRMWARE = "firmware"
    RESEND = "resend"
    RESEND_LOOP = "resend_loop"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    EMERGENCY = "emergency"


@attrs.frozen
class Connected:
    """The handshake completed: the printer answered the hello."""


@attrs.frozen
class Received:
    """A non-ok line from the printer, for the terminal log and the received-line observers."""

    line: str


@attrs.frozen
class Temperatures:
    """A parsed temperature report as the firmware wrote it (T, T0.., B, C, custom); the
    session resolves a bare `T` against the current tool."""

    temps: Mapping[str, tuple[float | None, float | None]]


@attrs.frozen
class PositionReport:
    position: Position


@attrs.frozen
class FirmwareInfo:
    name: str | None
    data: Mapping[str, str]


@attrs.frozen
class CapabilityReported:
    name: str
    enabled: bool
    all: Mapping[str, bool]


@attrs.frozen
class CapabilityReport:
    """The Cap: block ended."""

    all: Mapping[str, bool]


@attrs.frozen
class ActionCommand:
    """`// action:<name> <params>` from the printer."""

    line: str
    name: str
    params: str


@attrs.frozen
class FirmwareErrorLine:
    """An `Error:`/`!!` line that is neither a resend nor ignorable: the host decides."""

    text: str
    fatal: bool


@attrs.frozen
class BusyDetected:
    """The first `busy:` line: the printer speaks the busy protocol."""


@attrs.frozen
class TickleRequested:
    """A timeout while printing: the host should send M105 to provoke an answer."""


@attrs.frozen
class PrinterReset:
    """The printer sent `start` while operational: it reset itself."""

    idle: bool


@attrs.frozen
class InvalidTool:
    tool: int | None  # None: the firmware named no tool (the current one is meant)


@attrs.frozen
class LinkFailed:
    """The engine entered ERROR: the link must be closed. `message` is for humans."""

    reason: ErrorReason
    message: str


@attrs.frozen
class StateChanged:
    old: LinkState
    new: LinkState


#: Every event the engine reports.
EngineEvent = (Connected | Received | Temperatures | PositionReport | FirmwareInfo
               | CapabilityReported | CapabilityReport | ActionCommand | FirmwareErrorLine
               | BusyDetected | TickleRequested | PrinterReset | InvalidTool | LinkFailed
               | StateChanged)
