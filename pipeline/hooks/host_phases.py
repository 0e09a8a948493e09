"""The contracts of the phases the host calls now and then rather than per command:
`printer.additional_state_data` (what stages add to the printer's state payloads, under
`plugins.<stage id>`), `events.register_custom_events` (`plugin_<id>_<name>`) and
`system.additional_commands` (system commands the HTTP API lists and runs). A stage that
answers with another shape is logged with its id and left out. Pure: running a system
command is the app's business.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import attrs

from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase

log = logging.getLogger("printpipe.pipeline")


def additional_state_data(pipeline: Pipeline, *, initial: bool = False) -> dict[str, Any]:
    """`printer.additional_state_data`: stage id -> the dict it adds (seed 002)."""
    out: dict[str, Any] = {}
    for st, data in pipeline.call(Phase.PRINTER_ADDITIONAL_STATE_DATA, initial=initial):
        if isinstance(data, dict):
            out[st.id] = data
        elif data is not None:
            st.counters.errors += 1
            log.error("stage %r in %s returned %s, not a dict; left out", st.id,
                      Phase.PRINTER_ADDITIONAL_STATE_DATA.value, type(data).__name__)
    return out


def custom_event_names(pipeline: Pipeline) -> list[str]:
    """`events.register_custom_events`: `plugin_<id>_<name>` for every name returned."""
    return [f"plugin_{st.id}_{name}" for st, names in
            pipeline.call(Phase.EVENTS_REGISTER_CUSTOM_EVENTS)
            for name in (names or ()) if isinstance(name, str)]


_ACTION_RE = re.compile(r"[a-z0-9_-]+")


@attrs.frozen
class SystemCommand:
    """One command a `system.additional_commands` stage declares. `action` is namespaced by
    the stage id (`<id>:<action>`), as OctoPrint does with the plugin's name."""

    name: str
    action: str
    command: str
    source: str  # the stage id that declared it
    confirm: str | None = None
    run_async: bool = False
    ignore: bool = False
    debug: bool = False
    before: Callable[[], object] | None = attrs.field(default=None, eq=False)


def system_commands(pipeline: Pipeline) -> list[SystemCommand]:
    """The commands `system.additional_commands` stages declare; invalid ones are logged
    with the stage id and left out."""
    out: list[SystemCommand] = []
    for st, defs in pipeline.call(Phase.SYSTEM_ADDITIONAL_COMMANDS):
        for d in defs or ():
            problem = None
            if not isinstance(d, dict):
                problem = f"{d!r} is not a dict"
            elif not all(isinstance(d.get(k), str) and d.get(k) for k in
                         ("name", "action", "command")):
                problem = "name, action and command are required strings"
            elif not _ACTION_RE.fullmatch(d["action"]):
                problem = f"action {d['action']!r} must match [a-z0-9-_]+"
            elif d.get("before") is not None and not callable(d["before"]):
                problem = "before must be callable"
            if problem:
                st.counters.errors += 1
                log.error("stage %r in %s: %s; command left out", st.id,
                          Phase.SYSTEM_ADDITIONAL_COMMANDS.value, problem)
                continue
            out.append(SystemCommand(
                d["name"], f"{st.id}:{d['action']}", d["command"], st.id, d.get("confirm"),
                bool(d.get("async", False)), bool(d.get("ignore", False)),
                bool(d.get("debug", False)), d.get("before")))
    return out
