"""The contracts of the printer-level phases that are called now and then rather than per
command: `printer.additional_state_data` (what stages add to the printer's state payloads,
under `plugins.<stage id>`) and `events.register_custom_events` (`plugin_<id>_<name>`).
A stage that answers with another shape is logged with its id and left out. Pure.
"""

from __future__ import annotations

import logging
from typing import Any

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
