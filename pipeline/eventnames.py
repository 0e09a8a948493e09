"""Event names (EVENTS.md) as an enum: publishers and subscriptions use these, never bare strings."""

from __future__ import annotations

import enum


class Event(str, enum.Enum):
    STARTUP = "Startup"
    SHUTDOWN = "Shutdown"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTING = "Disconnecting"
    DISCONNECTED = "Disconnected"
    ERROR = "Error"
    PRINTER_STATE_CHANGED = "PrinterStateChanged"
    FIRMWARE_DATA = "FirmwareData"
    PRINTER_RESET = "PrinterReset"
    ESTOP = "EStop"
    COMMAND_SUPPRESSED = "CommandSuppressed"
    INVALID_TOOL_REPORTED = "InvalidToolReported"
    POSITION_UPDATE = "PositionUpdate"
    TOOL_CHANGE = "ToolChange"
    Z_CHANGE = "ZChange"
    PRINT_STARTED = "PrintStarted"
    PRINT_DONE = "PrintDone"
    PRINT_FAILED = "PrintFailed"
    PRINT_CANCELLING = "PrintCancelling"
    PRINT_CANCELLED = "PrintCancelled"
    PRINT_PAUSED = "PrintPaused"
    PRINT_RESUMED = "PrintResumed"

    def __str__(self) -> str:
        return self.value
