"""Fault injection for the virtual printer: the deterministic dice of a FaultSpec (declared
once, with the configuration's `virtual.faults` options, in pipeline.config).

Each fault kind rolls its own `random.Random` seeded from (seed, kind), so enabling one
fault does not shift the sequence of another and a run is reproducible from the seed alone.
A kind whose rate is 0 never rolls (no cost on the hot path). No IO, no trio.
"""

from __future__ import annotations

import enum
import random

from pipeline.config.schema import FaultSpec


class FaultKind(enum.Enum):
    """The randomly rolled faults; the value names the dice stream."""

    CORRUPT = "corrupt"
    LOST_OK = "lost_ok"
    LOST_LINE = "lost_line"
    BUSY = "busy"
    NOISE = "noise"


class FaultDice:
    """One seeded random stream per fault kind; `roll(kind)` is True at that kind's rate."""

    __slots__ = ("_rates", "_rngs")

    def __init__(self, spec: FaultSpec) -> None:
        self._rates = {
            FaultKind.CORRUPT: spec.corrupt_rate,
            FaultKind.LOST_OK: spec.lost_ok_rate,
            FaultKind.LOST_LINE: spec.lost_line_rate,
            FaultKind.BUSY: spec.busy_rate,
            FaultKind.NOISE: spec.error_rate,
        }
        # str seeds go through sha512: stable across runs and PYTHONHASHSEED values.
        self._rngs = {kind: random.Random(f"{spec.seed}/{kind.value}") for kind in FaultKind}

    def active(self, kind: FaultKind) -> bool:
        return self._rates[kind] > 0.0

    def roll(self, kind: FaultKind) -> bool:
        rate = self._rates[kind]
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._rngs[kind].random() < rate
