"""The virtual printer's heat model: frozen heater states and pure functions over time.

A heater moves linearly toward its goal (the target, never below ambient): up at
`heat_rate`, down at `cool_rate` degC/s. A state is an anchor (temperature at time `since`)
plus a target, so the temperature at any later `now` is computed, never stepped. Also here:
the Marlin-style temperature report text (`T:.. /.. B:.. /.. @:0 B@:0`). No IO, no trio.
"""

from __future__ import annotations

import enum
import math

import attrs

# Marlin's M109/M190 "close enough": the wait ends within this many degrees of the target.
WAIT_WINDOW = 1.0


class HeaterKind(enum.Enum):
    """Which heater; the value is its letter in temperature reports."""

    TOOL = "T"
    BED = "B"
    CHAMBER = "C"


class WaitMode(enum.Enum):
    """How M109/M190/M191 wait: S waits only while heating up, R both ways (Marlin)."""

    HEAT_ONLY = "S"
    BOTH_WAYS = "R"


@attrs.frozen(slots=True)
class Thermals:
    """The physical constants of the model."""

    ambient: float
    heat_rate: float
    cool_rate: float


@attrs.frozen(slots=True)
class HeaterState:
    """One heater: it was `actual` degC at time `since` and is heading for `target` (0 = off)."""

    actual: float
    since: float
    target: float = 0.0


def temperature(state: HeaterState, now: float, th: Thermals) -> float:
    """The heater's temperature at `now` (>= state.since)."""
    goal = state.target if state.target > th.ambient else th.ambient
    start = state.actual
    if goal == start:
        return start
    dt = now - state.since
    if dt <= 0.0:
        return start
    if goal > start:
        return min(goal, start + th.heat_rate * dt)
    return max(goal, start - th.cool_rate * dt)


def retarget(state: HeaterState, target: float, now: float, th: Thermals) -> HeaterState:
    """The state after setting a new target at `now` (re-anchored at the current temperature)."""
    return HeaterState(temperature(state, now, th), now, max(0.0, target))


def wait_end(state: HeaterState, now: float, mode: WaitMode, th: Thermals) -> float | None:
    """When an M109-style wait on `state` (retargeted at `now`) ends, or None for no wait.

    No wait when already inside the window, when heat-only and above the target, or when the
    target can never be reached (below ambient: the model has no cooler).
    """
    target = state.target
    actual = temperature(state, now, th)
    gap = target - actual
    if abs(gap) <= WAIT_WINDOW:
        return None
    if gap > 0:
        rate = th.heat_rate
    else:
        if mode is WaitMode.HEAT_ONLY or target + WAIT_WINDOW < th.ambient or target <= 0:
            return None
        rate = th.cool_rate
    if rate <= 0:
        return math.inf
    return now + (abs(gap) - WAIT_WINDOW) / rate


def format_report(tools: list[HeaterState], current_tool: int, bed: HeaterState | None,
                  chamber: HeaterState | None, now: float, th: Thermals) -> str:
    """Marlin's temperature text, without a leading `ok` or space.

    One tool: `T:a /t B:a /t @:0 B@:0`. Several: `T:` is the current tool, then `T0:`..`Tn:`.
    `B:` only with a heated bed, `C:` only with a heated chamber.
    """
    cur = tools[current_tool]
    parts = [f"T:{temperature(cur, now, th):.2f} /{cur.target:.2f}"]
    if len(tools) > 1:
        for i, st in enumerate(tools):
            parts.append(f"T{i}:{temperature(st, now, th):.2f} /{st.target:.2f}")
    if bed is not None:
        parts.append(f"B:{temperature(bed, now, th):.2f} /{bed.target:.2f}")
    if chamber is not None:
        parts.append(f"C:{temperature(chamber, now, th):.2f} /{chamber.target:.2f}")
    parts.append("@:0")
    if bed is not None:
        parts.append("B@:0")
    return " ".join(parts)
