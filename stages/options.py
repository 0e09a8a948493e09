"""What the built-in stages share: option validators (strictyaml scalars checked by a regex),
and the types of their handlers' arguments and results.

Errors come out as strictyaml errors at the option's line, which config/reader.py turns into
ConfigErrors naming file, line and key.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import strictyaml as sy

from pipeline.config.reader import GCODE_WORD_RE

WORD_RE = re.compile(r"[\w.:-]+")

#: What the G-code-phase handlers here return: None keeps the command, (line,) replaces it,
#: (None,) suppresses it. The chain accepts more shapes (README "Writing handlers").
Rewrite = tuple[str | None] | None


class Comm(Protocol):
    """The part of the handler facade (session's CommFacade) these stages call.

    Stages may not import session/, so this spells out what they rely on. Handlers that only
    log read `logger` with getattr: a pipeline built without a printer hands them None.
    """

    @property
    def logger(self) -> logging.Logger: ...

    @property
    def current_tool(self) -> int: ...

    @property
    def current_z(self) -> float | None: ...

    def isPrinting(self) -> bool: ...  # noqa: N802  (OctoPrint's MachineCom name)

    def fire_event(self, name: str, payload: dict[str, Any] | None = None) -> None: ...


class Matching(sy.ScalarValidator):  # type: ignore[misc]  # strictyaml has no types
    """A scalar whose stripped text fully matches `regex`; `what` names it in errors."""

    def __init__(self, regex: re.Pattern[str], what: str, hint: str = "") -> None:
        super().__init__()
        self.regex = regex
        self.what = what
        self.hint = hint

    @property
    def rule_description(self) -> str:
        return self.what

    def validate_scalar(self, chunk: Any) -> str:
        text: str = chunk.contents.strip()
        if not self.regex.fullmatch(text):
            hint = f" ({self.hint})" if self.hint else ""
            chunk.expecting_but_found(f"when expecting {self.what}{hint}",
                                      f"found {chunk.contents!r}")
        return text


def gcode_word(examples: str = "M300, G28, M80.1, T2 or T") -> Matching:
    return Matching(GCODE_WORD_RE, f"a G-code word like {examples}", "case matters")


def word(what: str) -> Matching:
    return Matching(WORD_RE, what, "one word of letters, digits, '_', '-', '.', ':'")


def phrase(what: str) -> Matching:
    return Matching(re.compile(r".*\S.*", re.S), what)
