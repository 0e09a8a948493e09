"""Handlers for tests/test_events_catalogue.py, written as an OctoPrint plugin writes them: one
registers custom events (`events.register_custom_events`), one fires them when the printer
sends `// action:<name>` (`comm.protocol.action`) through `comm_instance.fire_event`."""

#: The names registered; declared under stage id `catalogue` they become plugin_catalogue_<name>.
CUSTOM = ("beeped", "jammed")
STAGE_ID = "catalogue"


def custom_events(*args, **kwargs):
    return list(CUSTOM)


def fire_custom_action(comm_instance, line, action, name="", params="", *args, **kwargs):
    if name in CUSTOM:
        comm_instance.fire_event(f"plugin_{STAGE_ID}_{name}", {"params": params, "line": line})
