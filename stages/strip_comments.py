"""Built-in stage `strip_comments`: cuts `;` comments off commands and drops the ones that end
up empty (comment-only or blank lines).

Pure per-line logic on pipeline.gcode.strip_comment; no state, no options, no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.gcode import strip_comment
from pipeline.phases import Phase
from stages.options import Comm, Rewrite

NAME = "strip_comments"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_QUEUING, Phase.GCODE_SENDING})
SCHEMA: sy.Validator = sy.Map({})

_SUPPRESS = (None,)


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., Rewrite]:
    """Return the gcode-phase handler (it has nothing to configure)."""

    def strip_comments(comm_instance: Comm | None, phase: str, cmd: str, cmd_type: str | None,
                       gcode: str | None, subcode: str | None = None,
                       tags: frozenset[str] | None = None, *args: Any, **kwargs: Any) -> Rewrite:
        if ";" not in cmd:
            return _SUPPRESS if not cmd or cmd.isspace() else None
        stripped = strip_comment(cmd)
        if not stripped:
            return _SUPPRESS
        return None if stripped == cmd else (stripped,)

    strip_comments.__qualname__ = f"{NAME}[{stage_id}]"
    return strip_comments
