"""Built-in stage `sanitize_temperatures`: drops temperature readings whose actual value is
outside a sane range, the seed's answer to printers that now and then report garbage.

    - stage: sanitize_temperatures
      with:
        min: -20.0      # lowest believable actual temperature, °C (default -20.0)
        max: 400.0      # highest believable actual temperature, °C (default 400.0)

Runs in comm.protocol.temperatures.received. A reading is `sensor -> (actual, target)`; one
whose actual is below `min`, above `max` or not a number is removed, every other one is kept as
it came (a missing actual, None, is kept too). The handler returns the dict it was given when
nothing is dropped and a cleaned copy otherwise; an empty result ends the phase (seed 002), so a
report made only of bogus readings is ignored as a whole. Targets are not checked: the seed's
example only distrusts what the sensor read. No IO, no state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy
from strictyaml.compound import Map

from pipeline.phases import Phase
from pipeline.protocol.replies import Temps
from stages.options import Comm

NAME = "sanitize_temperatures"
PHASES: frozenset[Phase] = frozenset({Phase.TEMPERATURES_RECEIVED})

DEFAULT_MIN = -20.0
DEFAULT_MAX = 400.0


class _Finite(sy.Float):  # type: ignore[misc]  # strictyaml has no types
    """A float that is a real number (`nan` and `inf` make no sense as range ends)."""

    rule_description = "a float"

    def validate_scalar(self, chunk: Any) -> float:
        value: float = super().validate_scalar(chunk)
        if not math.isfinite(value):
            chunk.expecting_but_found("when expecting a finite number",
                                      f"found {chunk.contents!r}")
        return value


class _Range(Map):  # type: ignore[misc]  # strictyaml has no types
    """The options map, with `min` below `max` once both are read."""

    def validate(self, chunk: Any) -> None:
        super().validate(chunk)
        data = {str(k): v for k, v in chunk.contents.items()}
        low = float(data.get("min", DEFAULT_MIN))
        high = float(data.get("max", DEFAULT_MAX))
        if low >= high:
            chunk.expecting_but_found("while parsing the sanitize_temperatures range",
                                      f"min ({low:g}) must be below max ({high:g})")


SCHEMA: sy.Validator = _Range({
    sy.Optional("min", default=DEFAULT_MIN): _Finite(),
    sy.Optional("max", default=DEFAULT_MAX): _Finite(),
})


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., Temps]:
    """Return the temperatures.received handler for the configured range."""
    low = float(options.get("min", DEFAULT_MIN))
    high = float(options.get("max", DEFAULT_MAX))

    def sanitize_temperatures(comm_instance: Comm | None, parsed_temperatures: Temps, *args: Any,
                              **kwargs: Any) -> Temps:
        bad: list[tuple[str, float]] | None = None
        for key, reading in parsed_temperatures.items():
            actual = reading[0]
            if actual is not None and not low <= actual <= high:  # a NaN fails both tests
                if bad is None:
                    bad = []
                bad.append((key, actual))
        if bad is None:
            return parsed_temperatures
        logger = getattr(comm_instance, "logger", None)
        if logger is not None:
            logger.debug("stage %r dropped out-of-range readings %s", stage_id, bad)
        dropped = {key for key, _ in bad}
        return {k: v for k, v in parsed_temperatures.items() if k not in dropped}

    sanitize_temperatures.__qualname__ = f"{NAME}[{stage_id}]"
    return sanitize_temperatures
