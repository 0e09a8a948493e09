"""The `comm.protocol.scripts` phase contract (seed 002): what stages add to a G-code script.

Each stage is called as `(comm, "gcode", script_name)` and may return None or a 2-, 3- or
4-tuple `(prefix, postfix[, variables[, tags]])`. Prefix and postfix are a string (split on
newlines, each line stripped) or a list of lines; None adds nothing. Prefixes of later stages
go before earlier ones, postfixes follow in stage order; variables land under
`plugins.<stage id>`; every added line is tagged `plugin:<stage id>` plus the extra tags. A
stage that raises or returns another shape is logged with its id and ignored. Pure.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from pipeline.gcode import Command, split_lines, strip_comment
from pipeline.hooks.chain import BoundStage, Pipeline
from pipeline.phases import Phase

log = logging.getLogger("printpipe.pipeline")


@attrs.frozen
class ScriptAdditions:
    prefix: tuple[Command, ...] = ()
    postfix: tuple[Command, ...] = ()
    variables: dict[str, Any] = attrs.field(factory=dict)  # plugin id -> its variables


def _lines(part: Any, st: BoundStage, tags: frozenset[str]) -> list[Command]:
    if part is None:
        return []
    if isinstance(part, str):
        part = split_lines(part)
    if not isinstance(part, (list, tuple)):
        raise TypeError(f"prefix/postfix must be a str or a list, not {type(part).__name__}")
    out = []
    for line in part:
        if not isinstance(line, str):
            raise TypeError(f"script line {line!r} is not a str")
        text = strip_comment(line)
        if text:
            out.append(Command.parse(text, tags=tags))
    return out


def script_additions(pipeline: Pipeline, name: str, script_type: str = "gcode"
                     ) -> ScriptAdditions:
    prefix: list[Command] = []
    postfix: list[Command] = []
    variables: dict[str, Any] = {}
    for st, ret in pipeline.call(Phase.SCRIPTS, script_type, name):
        if ret is None:
            continue
        try:
            if not isinstance(ret, tuple) or not 2 <= len(ret) <= 4:
                raise TypeError(f"returned {type(ret).__name__}; expected None or a 2-, 3- "
                                "or 4-tuple (prefix, postfix, variables, tags)")
            extra = ret[3] if len(ret) > 3 and ret[3] else ()
            tags = frozenset({f"plugin:{st.id}", *extra})
            pre, post = _lines(ret[0], st, tags), _lines(ret[1], st, tags)
            if len(ret) > 2 and ret[2] is not None and not isinstance(ret[2], dict):
                raise TypeError("variables must be a dict")
        except TypeError as exc:
            st.counters.errors += 1
            log.error("stage %r in %s broke the phase contract for script %r: %s; ignored",
                      st.id, Phase.SCRIPTS.value, name, exc)
            continue
        prefix = pre + prefix  # later stages' prefixes first
        postfix += post
        if len(ret) > 2 and ret[2]:
            variables[st.id] = dict(ret[2])
    return ScriptAdditions(tuple(prefix), tuple(postfix), variables)
