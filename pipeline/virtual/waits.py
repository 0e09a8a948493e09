"""Blocking-command values of the virtual firmware: what it waits for and until when.

While a `Wait` is active, the firmware buffers later lines and emits only time-driven output
(temperature reports, busy lines, autoreports) until `end`, when the wait's ok is sent.
"""

from __future__ import annotations

import enum

import attrs


class WaitKind(enum.Enum):
    """What a blocking command waits for; later lines are buffered until it ends."""

    MOVE = "move"      # a G0/G1 taking FaultSpec.ok_delay
    DWELL = "dwell"    # G4
    HEAT = "heat"      # M109/M190/M191 (M108 breaks it)
    SYNC = "sync"      # the Marlin model: a command waits for the planned moves first


@attrs.frozen(slots=True)
class Wait:
    """A blocking command in progress: its ok (`ok`) is due at `end` (inf: until M108)."""

    kind: WaitKind
    end: float
    reports: bool = False   # print a temperature line every wait_report_interval
    busy: bool = False      # print a busy line every busy interval (if the protocol is on)
    ok: str = "ok"
