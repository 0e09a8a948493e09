"""The printer's states as OctoPrint names them (its display strings are the values)."""

from __future__ import annotations

import enum


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
