"""The pipeline's phases: every OctoPrint hook that concerns a printer host, by its name with
the leading `octoprint.` dropped, plus the hooks that are deliberately not phases and why.

Pure values only; config/reader.py validates `pipeline:` keys against these,
hooks/chain.py runs them.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """A pipeline phase; the value is the hook name as written in the YAML config."""

    GCODE_QUEUING = "comm.protocol.gcode.queuing"
    GCODE_QUEUED = "comm.protocol.gcode.queued"
    GCODE_SENDING = "comm.protocol.gcode.sending"
    GCODE_SENT = "comm.protocol.gcode.sent"
    #: Every line of an upload to the SD card, after `sending` (the printer stores it then).
    GCODE_SENDING_SD = "comm.protocol.gcode.sending.sd"
    GCODE_RECEIVED = "comm.protocol.gcode.received"
    GCODE_ERROR = "comm.protocol.gcode.error"
    ATCOMMAND_QUEUING = "comm.protocol.atcommand.queuing"
    ATCOMMAND_SENDING = "comm.protocol.atcommand.sending"
    ACTION = "comm.protocol.action"
    SCRIPTS = "comm.protocol.scripts"
    TEMPERATURES_RECEIVED = "comm.protocol.temperatures.received"
    FIRMWARE_INFO = "comm.protocol.firmware.info"
    FIRMWARE_CAPABILITIES = "comm.protocol.firmware.capabilities"
    FIRMWARE_CAPABILITY_REPORT = "comm.protocol.firmware.capability_report"
    SERIAL_FACTORY = "comm.transport.serial.factory"
    SERIAL_ADDITIONAL_PORT_NAMES = "comm.transport.serial.additional_port_names"
    PRINTER_HANDLE_CONNECT = "printer.handle_connect"
    #: Replaces the upload to the SD card: a stage returning a remote name takes it over.
    PRINTER_SDCARDUPLOAD = "printer.sdcardupload"
    PRINTER_ESTIMATION_FACTORY = "printer.estimation.factory"
    PRINTER_ADDITIONAL_STATE_DATA = "printer.additional_state_data"
    EVENTS_REGISTER_CUSTOM_EVENTS = "events.register_custom_events"
    FILEMANAGER_EXTENSION_TREE = "filemanager.extension_tree"
    FILEMANAGER_PREPROCESSOR = "filemanager.preprocessor"
    SYSTEM_ADDITIONAL_COMMANDS = "system.additional_commands"
    TIMELAPSE_CAPTURE_PRE = "timelapse.capture.pre"
    TIMELAPSE_CAPTURE_POST = "timelapse.capture.post"
    TIMELAPSE_EXTENSIONS = "timelapse.extensions"

    # Members are singletons compared by identity, so they hash by identity too, in C: Enum's
    # own __hash__ runs Python code, and the command path looks phases up on every line.
    __hash__ = object.__hash__

    @property
    def short(self) -> str:
        """The last part of the hook name (`queuing`, `sent`, ...), as handlers receive it."""
        return self.value.rsplit(".", 1)[1]


#: Phase -> its short name, computed once (`Phase.short` splits the value on every call);
#: the SD upload's sending phase is the `sending` phase of the lines it stores.
SHORT_NAMES: dict[Phase, str] = {p: p.short for p in Phase} | {Phase.GCODE_SENDING_SD: "sending"}

#: The four command phases, in the order a command passes them.
GCODE_PHASES = (Phase.GCODE_QUEUING, Phase.GCODE_QUEUED, Phase.GCODE_SENDING, Phase.GCODE_SENT)

#: OctoPrint hooks that are not printpipe phases, with the reason `printpipe check` gives.
NOT_PHASES: dict[str, str] = {
    "accesscontrol.keyvalidator": "printpipe has no user accounts; API keys live in its config",
    "access.permissions": "printpipe has no user accounts or permission system",
    "accesscontrol.appkey": "application keys are built in (printpipe keys)",
    "cli.commands": "printpipe's CLI is not extensible by hooks",
    "printer.factory": "the printer session is printpipe's own and cannot be replaced",
    "filemanager.analysis.factory": "printpipe's light file analysis is built in",
    "plugin.backup.additional_excludes": "printpipe has no backup plugin",
    "plugin.backup.before_backup": "printpipe has no backup plugin",
    "plugin.backup.after_restore": "printpipe has no backup plugin",
    "plugin.pluginmanager.reconnect_hooks": "printpipe has no plugin manager",
    "plugin.softwareupdate.check_config": "printpipe has no software update plugin",
    "server.api.before_request": "printpipe's HTTP API is fixed and minimal",
    "server.api.after_request": "printpipe's HTTP API is fixed and minimal",
    "server.http.access_validator": "printpipe's HTTP API has no extension routes",
    "server.http.after_request": "printpipe's HTTP API is fixed and minimal",
    "server.http.bodysize": "the body limit is the http.body_limit setting",
    "server.http.routes": "printpipe's HTTP API has no extension routes",
    "server.sockjs.authed": "the push socket's auth and messages are fixed",
    "server.sockjs.emit": "the push socket's auth and messages are fixed",
    "server.sockjs.register": "the push socket's auth and messages are fixed",
    "server.api.login": "printpipe has no user accounts",
    "slicer.register": "printpipe does not slice",
    "slicing.estimate": "printpipe does not slice",
    "theming.dialog": "printpipe has no web UI",
    "theming.login": "printpipe has no web UI",
    "ui.web.templatetypes": "printpipe has no web UI",
    "webcam.snapshot": "printpipe fetches each printer's webcam.snapshot URL itself",
}

PHASE_BY_NAME: dict[str, Phase] = {p.value: p for p in Phase}

#: Hooks the seed calls without `comm_instance` as their first argument.
NO_COMM_PHASES = frozenset({
    Phase.SERIAL_ADDITIONAL_PORT_NAMES, Phase.PRINTER_HANDLE_CONNECT,
    Phase.PRINTER_ESTIMATION_FACTORY, Phase.PRINTER_ADDITIONAL_STATE_DATA,
    Phase.EVENTS_REGISTER_CUSTOM_EVENTS, Phase.FILEMANAGER_EXTENSION_TREE,
    Phase.FILEMANAGER_PREPROCESSOR, Phase.SYSTEM_ADDITIONAL_COMMANDS,
    Phase.TIMELAPSE_CAPTURE_PRE, Phase.TIMELAPSE_CAPTURE_POST, Phase.TIMELAPSE_EXTENSIONS})
