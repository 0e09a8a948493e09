"""Built-in stage `action_event`: turns `// action:<name> <params>` lines from the firmware into
events (the seed's custom-action-command example, publishing instead of only logging).

    - stage: action_event
      with:
        actions:          # action names to react to, exactly; empty or absent = every action
          - custom
          - filament_runout
        event: FilamentAction   # the event fired; default "plugin_<stage id>_action"

Runs in comm.protocol.action. For a matching action it calls
`comm_instance.fire_event(event, {"action": action, "name": name, "params": params,
"line": line})` and logs it at INFO; other actions are ignored. The action name is the `name=`
argument, or the first word of `action` when a caller leaves `name` empty. The built-in actions
(pause, resume, cancel...) keep working whatever this stage does: the action phase returns
nothing. No IO, no state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.phases import Phase
from stages.options import Comm, word

NAME = "action_event"
PHASES: frozenset[Phase] = frozenset({Phase.ACTION})



SCHEMA: sy.Validator = sy.Map({
    sy.Optional("actions", default=[]): sy.EmptyList() | sy.Seq(word("an action name")),
    sy.Optional("event"): word("an event name"),
})


def default_event(stage_id: str) -> str:
    """The event fired when the config names none (OctoPrint's `plugin_<id>_<name>` style)."""
    return f"plugin_{stage_id}_action"


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., None]:
    """Return the action-phase handler for the configured names and event."""
    wanted = frozenset(options.get("actions") or ())
    event = options.get("event") or default_event(stage_id)

    def action_event(comm_instance: Comm, line: str, action: str, name: str = "",
                     params: str = "", *args: Any, **kwargs: Any) -> None:
        if not name:
            name, _, rest = action.strip().partition(" ")
            params = params or rest.strip()
        if wanted and name not in wanted:
            return None
        logger = getattr(comm_instance, "logger", None)
        if logger is not None:
            logger.info("stage %r: action %r from the printer, firing %s", stage_id, name, event)
        comm_instance.fire_event(event, {"action": action, "name": name, "params": params,
                                         "line": line})
        return None

    action_event.__qualname__ = f"{NAME}[{stage_id}]"
    return action_event
