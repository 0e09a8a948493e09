"""Event names (EVENTS.md) as an enum, and the catalogue: which payload keys each event carries.

Publishers use the enum, never bare strings. The catalogue lets the config check a
subscription's event names and placeholders at load time. Pure: no IO, no trio.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType


class Event(enum.StrEnum):
    """OctoPrint's event names; str(), f-strings and JSON all give the name itself."""

    # server and push channel
    STARTUP = "Startup"
    SHUTDOWN = "Shutdown"
    CLIENT_OPENED = "ClientOpened"
    CLIENT_AUTHED = "ClientAuthed"
    CLIENT_CLOSED = "ClientClosed"
    SETTINGS_UPDATED = "SettingsUpdated"
    # printer communication
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTING = "Disconnecting"
    DISCONNECTED = "Disconnected"
    ERROR = "Error"
    PRINTER_STATE_CHANGED = "PrinterStateChanged"
    FIRMWARE_DATA = "FirmwareData"
    PRINTER_RESET = "PrinterReset"
    # timelapse
    CAPTURE_START = "CaptureStart"
    CAPTURE_DONE = "CaptureDone"
    CAPTURE_FAILED = "CaptureFailed"
    POST_ROLL_START = "PostRollStart"
    POST_ROLL_END = "PostRollEnd"
    MOVIE_RENDERING = "MovieRendering"
    MOVIE_DONE = "MovieDone"
    MOVIE_FAILED = "MovieFailed"
    # files
    UPLOAD = "Upload"
    FILE_ADDED = "FileAdded"
    FILE_REMOVED = "FileRemoved"
    FILE_MOVED = "FileMoved"
    FOLDER_ADDED = "FolderAdded"
    FOLDER_REMOVED = "FolderRemoved"
    FOLDER_MOVED = "FolderMoved"
    UPDATED_FILES = "UpdatedFiles"
    METADATA_ANALYSIS_STARTED = "MetadataAnalysisStarted"
    METADATA_ANALYSIS_FINISHED = "MetadataAnalysisFinished"
    FILE_SELECTED = "FileSelected"
    FILE_DESELECTED = "FileDeselected"
    TRANSFER_STARTED = "TransferStarted"
    TRANSFER_DONE = "TransferDone"
    TRANSFER_FAILED = "TransferFailed"
    # printing
    PRINT_STARTED = "PrintStarted"
    PRINT_DONE = "PrintDone"
    PRINT_FAILED = "PrintFailed"
    PRINT_CANCELLING = "PrintCancelling"
    PRINT_CANCELLED = "PrintCancelled"
    PRINT_PAUSED = "PrintPaused"
    PRINT_RESUMED = "PrintResumed"
    PRINT_INTERRUPTED = "PrintInterrupted"  # printpipe's: a crash journal found at start
    # G-code events (the gcode_events stage fires these when the command was sent)
    POWER_ON = "PowerOn"
    POWER_OFF = "PowerOff"
    HOME = "Home"
    Z_CHANGE = "ZChange"
    DWELL = "Dwelling"  # G4 (OctoPrint's docs say "Dwell"; its code fires "Dwelling")
    WAITING = "Waiting"
    COOLING = "Cooling"
    ALERT = "Alert"
    CONVEYOR = "Conveyor"
    EJECT = "Eject"
    ESTOP = "EStop"
    FILAMENT_CHANGE = "FilamentChange"
    TOOL_CHANGE = "ToolChange"
    # from replies and rules
    POSITION_UPDATE = "PositionUpdate"
    COMMAND_SUPPRESSED = "CommandSuppressed"
    INVALID_TOOL_REPORTED = "InvalidToolReported"


_JOB = ("name", "path", "origin", "size", "owner")
_FILE = ("storage", "path", "name", "type")
_MOVIE = ("gcode", "movie", "movie_basename", "movie_prefix")

#: Payload keys per event. Keys a payload may lack (EVENTS.md's "?") are listed too: a
#: subscription may name them, and a firing without them skips with a warning.
PAYLOAD_KEYS: Mapping[Event, tuple[str, ...]] = MappingProxyType({
    Event.STARTUP: (), Event.SHUTDOWN: (),
    Event.CLIENT_OPENED: ("remoteAddress",),
    Event.CLIENT_AUTHED: ("remoteAddress", "username"),
    Event.CLIENT_CLOSED: ("remoteAddress",),
    Event.SETTINGS_UPDATED: (),
    Event.CONNECTING: (), Event.CONNECTED: ("port", "baudrate"),
    Event.DISCONNECTING: (), Event.DISCONNECTED: (),
    Event.ERROR: ("error", "reason", "faq"),
    Event.PRINTER_STATE_CHANGED: ("state_id", "state_string"),
    Event.FIRMWARE_DATA: ("name", "data"),
    Event.PRINTER_RESET: ("idle",),
    Event.UPLOAD: ("name", "path", "target", "select", "print", "effective_select",
                   "effective_print", "userdata"),
    Event.FILE_ADDED: _FILE, Event.FILE_REMOVED: _FILE,
    Event.FILE_MOVED: ("storage", "source_path", "source_name", "source_type",
                       "destination_path", "destination_name", "destination_type"),
    Event.FOLDER_ADDED: ("storage", "path", "name"),
    Event.FOLDER_REMOVED: ("storage", "path", "name"),
    Event.FOLDER_MOVED: ("storage", "source_path", "source_name", "destination_path",
                         "destination_name"),
    Event.UPDATED_FILES: ("type",),
    Event.METADATA_ANALYSIS_STARTED: ("name", "path", "origin"),
    Event.METADATA_ANALYSIS_FINISHED: ("name", "path", "origin", "result"),
    Event.FILE_SELECTED: ("name", "path", "origin"),
    Event.FILE_DESELECTED: (),
    Event.TRANSFER_STARTED: ("local", "remote"),
    Event.TRANSFER_DONE: ("local", "remote", "time"),
    Event.TRANSFER_FAILED: ("local", "remote", "time", "reason"),
    Event.PRINT_STARTED: (*_JOB, "user"),
    Event.PRINT_DONE: (*_JOB, "time", "user"),
    Event.PRINT_FAILED: (*_JOB, "time", "reason", "error", "user"),
    Event.PRINT_CANCELLING: (*_JOB, "user", "firmwareError"),
    Event.PRINT_CANCELLED: (*_JOB, "time", "user", "position", "fileposition", "progress"),
    Event.PRINT_PAUSED: (*_JOB, "user", "position", "fileposition", "progress"),
    Event.PRINT_RESUMED: (*_JOB, "user"),
    # The crash journal of a print the host did not see end (printpipe's own event, published
    # once at start): the file (name, path, origin, size), `filepos` and `line` of the last
    # acknowledged file line, `time` (epoch seconds) of the record, `position` (x, y, z, e,
    # f), `relative_e`, `fan` (0-255), `tool` and heater `targets` (tool0.., bed).
    Event.PRINT_INTERRUPTED: ("name", "path", "origin", "size", "filepos", "line", "time",
                              "position", "relative_e", "fan", "tool", "targets"),
    Event.POWER_ON: (), Event.POWER_OFF: (), Event.HOME: (),
    Event.Z_CHANGE: ("new", "old"),
    Event.DWELL: (), Event.WAITING: (), Event.COOLING: (), Event.ALERT: (),
    Event.CONVEYOR: (), Event.EJECT: (), Event.ESTOP: (), Event.FILAMENT_CHANGE: (),
    Event.TOOL_CHANGE: ("old", "new"),
    Event.POSITION_UPDATE: ("x", "y", "z", "e", "t", "f"),
    Event.COMMAND_SUPPRESSED: ("command", "message", "severity"),
    Event.INVALID_TOOL_REPORTED: ("tool", "fallback"),
    Event.CAPTURE_START: ("file",),
    Event.CAPTURE_DONE: ("file",),
    Event.CAPTURE_FAILED: ("file", "error", "url"),
    Event.POST_ROLL_START: ("postroll_duration", "postroll_length", "postroll_fps"),
    Event.POST_ROLL_END: (),
    Event.MOVIE_RENDERING: _MOVIE,
    Event.MOVIE_DONE: _MOVIE,
    Event.MOVIE_FAILED: (*_MOVIE, "returncode", "error", "reason"),
})

#: Names subscriptions may use for a catalogue event ("Dwell" is the name OctoPrint's docs
#: give G4's event; its code, and so the wire, says "Dwelling").
ALIASES: Mapping[str, Event] = MappingProxyType({"Dwell": Event.DWELL})

#: GcodeScript<Name>Running / ...Finished: the names depend on the scripts that exist.
SCRIPT_EVENT_RE = re.compile(r"GcodeScript[A-Z]\w*(?:Running|Finished)")
#: Events a `events.register_custom_events` stage adds: plugin_<stage id>_<name>.
CUSTOM_EVENT_RE = re.compile(r"plugin_\w+")


def canonical(name: str) -> str:
    """The name an event is published under (resolves aliases)."""
    alias = ALIASES.get(name)
    return alias.value if alias is not None else name


def catalogue_event(name: str) -> Event | None:
    try:
        return Event(canonical(name))
    except ValueError:
        return None


def known_names() -> list[str]:
    return [e.value for e in Event] + list(ALIASES)
