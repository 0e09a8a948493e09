"""G-code values and pure line helpers: the Command model, comment stripping, parameters,
XOR checksums and N-line framing.

Everything here is on the per-line hot path: regexes are compiled once at import, and the
helpers allocate as little as they can. No IO, no trio, no logging.
"""

from __future__ import annotations

import re
from functools import reduce
from operator import xor
from typing import NamedTuple

# A G-code command word as OctoPrint recognises it: G/M with an optional .subcode, or T<n>.
# Case-sensitive on purpose (lower-case "g1" is an unknown command, as in OctoPrint).
_GCODE_RE = re.compile(r"\s*(?:([GM]\d+)(?:\.(\d+))?|(T)\d+)")
_GCODE_WITH_F_RE = re.compile(r"\s*(?:([GM]\d+)(?:\.(\d+))?|(T)\d+|(F)\d+)")
_FLOAT = r"[-+]?[0-9]*\.?[0-9]+"
# One compiled regex per parameter letter: the letter not preceded by a letter, then a number.
_PARAM_RES = {
    letter: re.compile(rf"(?<![A-Za-z]){letter}\s*({_FLOAT})", re.IGNORECASE)
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
}
_TOOL_RE = re.compile(r"\s*T(\d+)")

NO_TAGS: frozenset[str] = frozenset()


def parse_gcode(line: str, *, f_as_command: bool = False) -> tuple[str | None, str | None]:
    """Return (gcode, subcode) of a command line: ("G1", None), ("M80", "1"), ("T", None).

    (None, None) for anything that is not a recognised G-code command.
    """
    m = (_GCODE_WITH_F_RE if f_as_command else _GCODE_RE).match(line)
    if m is None:
        return None, None
    g = m.group(1)
    if g is not None:
        return g, m.group(2)
    if m.group(3) is not None:
        return "T", None
    return "F", None


class Command(NamedTuple):
    """One command on its way to the printer (immutable).

    `line` is the text without comment or line number; `gcode`/`subcode` are parsed from it;
    `cmd_type` de-duplicates the send queue (OctoPrint's semantics); `tags` say where it came
    from (`source:file`, `trigger:...`, `plugin:<id>`, ...). A NamedTuple rather than a frozen
    attrs class: one is built for every printed line, and a tuple builds three times faster.
    """

    line: str
    gcode: str | None
    subcode: str | None = None
    cmd_type: str | None = None
    tags: frozenset[str] = NO_TAGS

    @classmethod
    def parse(cls, line: str, *, cmd_type: str | None = None,
              tags: frozenset[str] = NO_TAGS) -> Command:
        """Build a Command from already comment-stripped text."""
        m = _GCODE_RE.match(line)
        if m is None:
            return _new(cls, (line, None, None, cmd_type, tags))
        g = m.group(1)
        if g is not None:
            return _new(cls, (line, g, m.group(2), cmd_type, tags))
        return _new(cls, (line, "T", None, cmd_type, tags))

    def with_tags(self, *tags: str) -> Command:
        return self._replace(tags=self.tags.union(tags))

    @property
    def is_atcommand(self) -> bool:
        return self.line.startswith("@")

    def param(self, letter: str) -> float | None:
        """The numeric value of parameter `letter` (either case), or None."""
        return param_value(self.line, letter)


_new = tuple.__new__


def strip_comment(line: str) -> str:
    """Cut the comment at the first `;` not escaped by a backslash, then strip whitespace.

    `\\;` stays as it is, backslash included (OctoPrint does the same).
    """
    i = line.find(";")
    if i < 0:
        return line.strip()
    while i > 0 and line[i - 1] == "\\":
        i = line.find(";", i + 1)
        if i < 0:
            return line.strip()
    return line[:i].strip()


#: What str.splitlines() splits at besides \n and \r. A G-code line ends at \n, \r\n or \r only:
#: any of these inside a command stays there, where the wire guard refuses it.
OTHER_LINE_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"


#: Any line break a text may hold: \n, \r and OTHER_LINE_BREAKS.
LINE_BREAK = re.compile("[\n\r" + OTHER_LINE_BREAKS + "]")


def split_lines(text: str) -> list[str]:
    r"""`text` cut at \n, \r\n and \r only (str.splitlines() also cuts at \v, \f, \x1c-\x1e,
    \x85, U+2028 and U+2029, which would make one command two); no empty last line."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    return lines


def param_value(line: str, letter: str) -> float | None:
    """The number after parameter `letter` in `line` (case-insensitive), or None."""
    m = _PARAM_RES[letter.upper()].search(line)
    return float(m.group(1)) if m else None


def tool_number(line: str) -> int | None:
    """The tool number of a `T<n>` command, or None."""
    m = _TOOL_RE.match(line)
    return int(m.group(1)) if m else None


def checksum(data: bytes) -> int:
    """XOR of every byte: the checksum Marlin-style firmware expects after `*`."""
    return reduce(xor, data, 0)


def frame(number: int, line: str) -> bytes:
    """The wire form of a numbered line: `N<n> <line>*<checksum>\\n`."""
    body = f"N{number} {line}".encode("ascii", "replace")
    return body + b"*%d\n" % reduce(xor, body, 0)


def encode_plain(line: str) -> bytes:
    """The wire form of an unnumbered line."""
    return line.encode("ascii", "replace") + b"\n"
