"""Built-in stage `tap`: counts the commands passing a G-code phase, by G-code word, and never
changes them. A probe for `printpipe check`, tests and benchmarks.

    - stage: tap
      id: tap_sent
      with:
        log: true         # default false: also log each command at DEBUG

Runs in comm.protocol.gcode.queuing, .queued, .sending and .sent; each declaration is its own
tap with its own counts. The handler is an object: `.counts` maps the `gcode` argument (`G1`,
`M104`, `T`; None for lines with no G-code word) to how many such commands passed, `.total` is
their sum. It always returns None. With `log: false` nothing but the count update runs per
command: the logging variant is a separate class chosen in build(). No IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strictyaml as sy

from pipeline.phases import GCODE_PHASES, Phase
from stages.options import Comm

NAME = "tap"
PHASES: frozenset[Phase] = frozenset(GCODE_PHASES)

SCHEMA: sy.Validator = sy.Map({
    sy.Optional("log", default=False): sy.Bool(),
})


class Tap:
    """Counts commands by G-code word; `.counts` and `.total` read them."""

    __slots__ = ("counts", "stage_id")

    def __init__(self, stage_id: str) -> None:
        self.stage_id = stage_id
        self.counts: dict[str | None, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()

    def __repr__(self) -> str:
        return f"<{NAME}[{self.stage_id}] total={self.total}>"

    def __call__(self, comm_instance: Comm | None, phase: str, cmd: str, cmd_type: str | None,
                 gcode: str | None, subcode: str | None = None,
                 tags: frozenset[str] | None = None, *args: Any, **kwargs: Any) -> None:
        counts = self.counts
        counts[gcode] = counts.get(gcode, 0) + 1


class LoggingTap(Tap):
    """A tap that also logs every command at DEBUG through `comm_instance.logger`."""

    __slots__ = ()

    def __call__(self, comm_instance: Comm | None, phase: str, cmd: str, cmd_type: str | None,
                 gcode: str | None, subcode: str | None = None,
                 tags: frozenset[str] | None = None, *args: Any, **kwargs: Any) -> None:
        counts = self.counts
        counts[gcode] = counts.get(gcode, 0) + 1
        logger = getattr(comm_instance, "logger", None)
        if logger is not None:
            logger.debug("tap %r %s: %s (gcode %s, tags %s)", self.stage_id, phase, cmd, gcode,
                         tags)


def build(options: Mapping[str, Any], stage_id: str) -> Tap:
    """Return a fresh tap for one declaration."""
    return (LoggingTap if options.get("log", False) else Tap)(stage_id)
