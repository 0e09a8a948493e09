"""The seed's example plugins (seed 002), written the way an OctoPrint plugin author writes
them: module-level hook functions with OctoPrint's signatures, plus `__plugin_hooks__` as an
OctoPrint plugin would declare it. printpipe declares them by import path instead."""

import logging

log = logging.getLogger("seed_examples")
seen = []


# comm.protocol.gcode.received: read the M115 response
def detect_machine_type(comm, line, *args, **kwargs):
    if "MACHINE_TYPE" not in line:
        return line
    from octo_parse import parse_m115  # a helper a plugin would ship itself
    seen.append(("machine_type", parse_m115(line).get("MACHINE_TYPE")))
    return line


# comm.protocol.temperatures.received: drop readings outside 1..300 C
def sanitize_temperatures(comm, parsed_temps):
    return {k: v for k, v in parsed_temps.items()
            if isinstance(v, tuple) and len(v) == 2 and (v[0] is None or 1 <= v[0] <= 300)}


# comm.protocol.gcode.error: some errors are harmless for this printer
def handle_error(comm, error_message, *args, **kwargs):
    lower = error_message.lower()
    if "fan error" in lower or "bed missing" in lower:
        seen.append(("handled", error_message))
        return True


# comm.protocol.action: react to // action:custom
def hook_action(comm, line, action, *args, **kwargs):
    if action != "custom":
        return
    seen.append(("custom action", line))
    log.info('Received "custom" action from printer')


# comm.protocol.atcommand.queuing: @wait pauses like @pause
def pause_on_wait(comm, phase, command, parameters, tags=None, *args, **kwargs):
    if command != "wait":
        return
    seen.append(("@wait", parameters))
    if tags and "source:file" in tags:
        comm.setPause(True)


# comm.protocol.scripts: message on connect, variables for beforePrintStarted
def message_on_connect(comm, script_type, script_name, *args, **kwargs):
    if script_type != "gcode" or script_name != "afterPrinterConnected":
        return None
    return None, ["M117 printpipe connected"]


def gcode_script_variables(comm, script_type, script_name, *args, **kwargs):
    if script_type != "gcode" or script_name != "beforePrintStarted":
        return None
    return None, None, {"myvariable": "Hi! I'm a variable!"}


__plugin_hooks__ = {
    "octoprint.comm.protocol.gcode.received": detect_machine_type,
    "octoprint.comm.protocol.temperatures.received": sanitize_temperatures,
    "octoprint.comm.protocol.gcode.error": handle_error,
    "octoprint.comm.protocol.action": hook_action,
    "octoprint.comm.protocol.atcommand.queuing": pause_on_wait,
    "octoprint.comm.protocol.scripts": message_on_connect,
}


# the ordering example: three handlers of one hook, orders 1, 2 and none
def order_one(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    seen.append(("order", "one"))


def order_two(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    seen.append(("order", "two"))


def order_none(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    seen.append(("order", "none"))
