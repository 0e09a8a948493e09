"""Built-in stage `firmware_errors`: marks printer errors as handled when their text contains a
configured phrase, so they do not trigger the configured error handling (the seed's
error-handler example: "fan error", "bed missing").

    - stage: firmware_errors
      with:
        handled:          # substrings, matched case-insensitively; at least one
          - fan error
          - bed missing

Runs in comm.protocol.gcode.error, which gets the message with its `Error:`/`!!` prefix already
stripped. A message containing one of the phrases is logged at WARNING through
`comm_instance.logger` and the handler returns True (handled: the host neither cancels nor
disconnects); any other message returns None and takes the normal path. Errors are rare, so the
check is a plain scan of the lower-cased phrases prepared in build(). No IO, no state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.phases import Phase
from stages.options import Comm, phrase

NAME = "firmware_errors"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_ERROR})


SCHEMA: sy.Validator = sy.Map({
    "handled": sy.Seq(phrase("a piece of error text")),
})


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., bool | None]:
    """Return the error-phase handler for `options["handled"]` (already validated)."""
    phrases = tuple(dict.fromkeys(p.strip().lower() for p in options["handled"] if p.strip()))
    if not phrases:
        raise ValueError("`handled:` needs at least one phrase")

    def firmware_errors(comm_instance: Comm | None, error_message: str, *args: Any,
                        **kwargs: Any) -> bool | None:
        lower = error_message.lower()
        for known in phrases:
            if known in lower:
                logger = getattr(comm_instance, "logger", None)
                if logger is not None:
                    logger.warning("printer error %r handled by stage %r (matched %r)",
                                   error_message, stage_id, known)
                return True
        return None

    firmware_errors.__qualname__ = f"{NAME}[{stage_id}]"
    return firmware_errors
