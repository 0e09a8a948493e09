"""Option validators the built-in stages share (strictyaml scalars checked by a regex).

Errors come out as strictyaml errors at the option's line, which config.py turns into
ConfigErrors naming file, line and key.
"""

from __future__ import annotations

import re

import strictyaml as sy

from pipeline.config.reader import GCODE_WORD_RE

WORD_RE = re.compile(r"[\w.:-]+")


class Matching(sy.ScalarValidator):
    """A scalar whose stripped text fully matches `regex`; `what` names it in errors."""

    def __init__(self, regex: re.Pattern[str], what: str, hint: str = "") -> None:
        super().__init__()
        self.regex = regex
        self.what = what
        self.hint = hint

    @property
    def rule_description(self) -> str:
        return self.what

    def validate_scalar(self, chunk):  # noqa: ANN001, ANN201
        text = chunk.contents.strip()
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
