"""Built-in stage `blocklist`: suppresses the commands it lists before they reach the printer.

    - stage: blocklist
      with:
        commands:         # G-code words: M300 (any subcode), M80.1 (that subcode only),
          - M300          #   T2 (that tool only), T (any tool change)
          - M80.1
        mode: reject      # drop (default): suppress quietly; reject: also warn and fire
                          #   CommandSuppressed {command, message, severity: "error"}
        only_while_printing: true   # default false: block whether or not a job is running

Runs in comm.protocol.gcode.queuing and .sending. A blocked command is suppressed with `(None,)`,
so the chain counts it as a suppression of this stage in both modes. Words are matched like the
rewrite stage's: case matters, `M300` also blocks `M300.1`. Everything else returns None after one
frozenset lookup on `gcode`; `comm_instance.isPrinting()` is asked only about listed commands.
No IO, no state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.events.names import Event
from pipeline.gcode import tool_number
from pipeline.phases import Phase
from stages.options import Comm, Rewrite, gcode_word

NAME = "blocklist"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_QUEUING, Phase.GCODE_SENDING})
MODES = ("drop", "reject")

_SUPPRESS = (None,)


SCHEMA: sy.Validator = sy.Map({
    "commands": sy.Seq(gcode_word()),
    sy.Optional("mode", default="drop"): sy.Enum(list(MODES)),
    sy.Optional("only_while_printing", default=False): sy.Bool(),
})


_Index = tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[int]]


def _index(words: Iterable[str]) -> _Index:
    """(words blocked whole, M80.1-style pairs, every gcode to look at, T<n> tool numbers)."""
    whole: set[str] = set()
    exact: set[str] = set()
    tools: set[int] = set()
    for word in words:
        if word[0] == "T":
            if word == "T":
                whole.add("T")
            else:
                tools.add(int(word[1:]))
        elif "." in word:
            exact.add(word)
        else:
            whole.add(word)
    watched = set(whole) | {w.partition(".")[0] for w in exact} | ({"T"} if tools else set())
    return frozenset(whole), frozenset(exact), frozenset(watched), frozenset(tools)


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., Rewrite]:
    """Return the gcode-phase handler for the listed commands (already validated)."""
    whole, exact, watched, tools = _index(options["commands"])
    if not watched:
        raise ValueError("`commands:` needs at least one G-code word")
    mode = options.get("mode", "drop")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    reject = mode == "reject"
    only_while_printing = bool(options.get("only_while_printing", False))

    def blocklist(comm_instance: Comm, phase: str, cmd: str, cmd_type: str | None,
                  gcode: str | None, subcode: str | None = None,
                  tags: frozenset[str] | None = None, *args: Any, **kwargs: Any) -> Rewrite:
        if gcode not in watched:
            return None
        if gcode not in whole:
            if gcode == "T":
                if tool_number(cmd) not in tools:
                    return None
            elif subcode is None or f"{gcode}.{subcode}" not in exact:
                return None
        if only_while_printing and not comm_instance.isPrinting():
            return None
        if reject:
            message = f"Not sending {cmd} to printer as it is blocked by stage {stage_id!r}"
            comm_instance.logger.warning("%s", message)
            comm_instance.fire_event(Event.COMMAND_SUPPRESSED.value,
                                     {"command": cmd, "message": message, "severity": "error"})
        else:
            logger = getattr(comm_instance, "logger", None)
            if logger is not None:
                logger.debug("stage %r dropped %r in %s", stage_id, cmd, phase)
        return _SUPPRESS

    blocklist.__qualname__ = f"{NAME}[{stage_id}]"
    return blocklist
