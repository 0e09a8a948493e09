"""The printer's states as OctoPrint names them (the display strings are the values), the one
table of the changes allowed between them, and `PrinterStates`, the owner of the current
state and of the error that put the printer in Error.

Every state change in the session goes through `PrinterStates.to`, which refuses a change the
table does not list with `IllegalTransition` (a bug in the caller, never a printer problem).
Pure: no IO, no trio.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from pipeline.errors import LocalProtocolError


class PrinterState(enum.Enum):
    OFFLINE = "Offline"
    CONNECTING = "Connecting"
    OPERATIONAL = "Operational"
    STARTING = "Starting"
    PRINTING = "Printing"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    RESUMING = "Resuming"
    CANCELLING = "Cancelling"
    FINISHING = "Finishing"
    ERROR = "Error"
    CLOSED_WITH_ERROR = "Offline after error"


S = PrinterState

#: The states of a running print job.
JOB_STATES = frozenset({S.STARTING, S.PRINTING, S.PAUSING, S.PAUSED, S.RESUMING, S.CANCELLING,
                        S.FINISHING})
#: A job may be paused from these (by the user, a pausing command or the printer).
PAUSABLE = frozenset({S.PRINTING, S.STARTING, S.RESUMING})
#: The link closed: from any live state, with or without an error.
_DOWN = frozenset({S.OFFLINE, S.CLOSED_WITH_ERROR})
#: The printer reset itself or failed: from any live state.
_LOST = frozenset({S.OPERATIONAL, S.ERROR}) | _DOWN

TRANSITIONS: Mapping[PrinterState, frozenset[PrinterState]] = {
    S.OFFLINE: frozenset({S.CONNECTING}),
    S.CONNECTING: frozenset({S.OPERATIONAL, S.ERROR}) | _DOWN,
    S.OPERATIONAL: frozenset({S.STARTING, S.ERROR}) | _DOWN,
    S.STARTING: frozenset({S.PRINTING, S.PAUSING, S.PAUSED, S.CANCELLING}) | _LOST,
    S.PRINTING: frozenset({S.FINISHING, S.PAUSING, S.PAUSED, S.CANCELLING}) | _LOST,
    S.PAUSING: frozenset({S.PAUSED, S.RESUMING, S.CANCELLING}) | _LOST,
    S.PAUSED: frozenset({S.RESUMING, S.PRINTING, S.CANCELLING}) | _LOST,
    S.RESUMING: frozenset({S.PRINTING, S.PAUSING, S.PAUSED, S.CANCELLING}) | _LOST,
    S.CANCELLING: _LOST,
    S.FINISHING: frozenset({S.CANCELLING}) | _LOST,
    S.ERROR: frozenset({S.CLOSED_WITH_ERROR}),
    S.CLOSED_WITH_ERROR: frozenset({S.CONNECTING}),
}


class IllegalTransition(LocalProtocolError):
    """A state change the transition table does not allow."""


class PrinterStates:
    """The current printer state and the error that ended the session, if any.

    `on_change(new)` is called after every change (the session publishes
    PrinterStateChanged from it).
    """

    def __init__(self, on_change: Callable[[PrinterState], None]) -> None:
        self.state = S.OFFLINE
        self.error: str | None = None
        self._on_change = on_change

    @property
    def in_job(self) -> bool:
        return self.state in JOB_STATES

    def to(self, new: PrinterState) -> None:
        """Change to `new` (nothing happens when already there).

        Raises:
            IllegalTransition: the table does not allow the change.
        """
        old = self.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"the printer cannot go from {old.value} to {new.value}")
        self.state = new
        self._on_change(new)

    def fail(self, error: str) -> None:
        """Keep the first error that explains why the printer stopped."""
        if self.error is None:
            self.error = error
