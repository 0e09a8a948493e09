"""What every section reader of the configuration shares: small helpers over strictyaml nodes
(the line of a key, whether a value is blank, a did-you-mean hint), `Reporter`, the narrow
view of the document reader that a section reader gets to report into, and the character
checks: `bad_characters` finds what YAML refuses before the parser trips over it without a
line, `escaped_controls` the control characters a quoted value spells as escapes.

reader.py walks the document and implements `Reporter`; sections.py reads its sections through
one. Both import this module and neither imports the other's internals. No trio, no IO.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any, Protocol

import strictyaml as sy
from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

from pipeline.config.options import Field
from pipeline.errors import ConfigError
from pipeline.events.names import CUSTOM_EVENT_RE, SCRIPT_EVENT_RE, catalogue_event, known_names

# what YAML 1.2 (and ruamel's reader) refuses: C0 controls but tab and line breaks, DEL, C1
# controls but NEL, surrogates, U+FFFE and U+FFFF
_NOT_YAML = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_C0_NAMES = ("NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK "
             "SYN ETB CAN EM SUB ESC FS GS RS US").split()

class Reporter(Protocol):
    """Where a section reader sends its problems, how it validates a node in place, and how it
    reads one option's value (validated, range-checked, converted)."""

    path: str
    errors: list[ConfigError]

    def error(self, message: str, line: int | None, key: str | None) -> None: ...

    def validate(self, node: sy.YAML, validator: sy.Validator, line: int, key: str,
                 where: str = "") -> bool: ...

    def field(self, field: Field, node: sy.YAML, line: int, keypath: str) -> Any: ...


def close(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """A hint for an unknown `name`: the close matches among `valid`, or all of them."""
    near = difflib.get_close_matches(name, list(valid), n=3)
    if near:
        return "did you mean " + " or ".join(repr(n) for n in near) + "?"
    return "valid: " + ", ".join(valid)


def key_line(node: sy.YAML, key: str) -> int:
    """The 1-based line of `key` in the mapping `node`."""
    line: int = node.as_marked_up().lc.key(key)[0]
    return line + 1


def is_blank(node: sy.YAML) -> bool:
    """An empty value (`key:` with nothing after it): the section keeps its defaults."""
    return node.is_scalar() and node.as_marked_up() in ("", None)


def bad_characters(text: str, limit: int = 5) -> list[tuple[int, str]]:
    """(1-based line, message) for the first character YAML refuses on each line, for at
    most `limit` lines, then one entry counting the lines left out. Empty when all is fine."""
    first: dict[int, tuple[int, str]] = {}  # line -> (column, character)
    line, line_start = 1, 0
    for match in _NOT_YAML.finditer(text):
        at = match.start()
        breaks = text.count("\n", line_start, at)
        if breaks:
            line += breaks
            line_start = text.rfind("\n", 0, at) + 1
        first.setdefault(line, (at - line_start + 1, match.group()))
    found = [(n, f"{_describe(char)} at column {column} is not allowed in YAML")
             for n, (column, char) in list(first.items())[:limit]]
    if len(first) > limit:
        more = f"and {len(first) - limit} more line(s) with such characters"
        found.append((list(first)[limit], more))
    return found


def escaped_controls(data: Any, keypath: str = "") -> Iterator[tuple[int, str, str]]:
    """(1-based line, key path, message) for each key or value of a parsed document (ruamel's
    marked-up maps and lists) holding a character `bad_characters` refuses, written as an
    escape (`"\\a"`, `"\\0"`): no setting takes control characters."""
    if isinstance(data, CommentedMap):
        items = [(f"{keypath}.{key}" if keypath else str(key), key, data.lc.key(key)[0], value,
                  data.lc.value(key)[0]) for key, value in data.items()]
    elif isinstance(data, CommentedSeq):
        items = [(f"{keypath}[{i}]", None, 0, value, data.lc.item(i)[0])
                 for i, value in enumerate(data)]
    else:
        return
    for where, key, key_line, value, value_line in items:
        for text, line in ((key, key_line), (value, value_line)):
            match = _NOT_YAML.search(text) if isinstance(text, str) else None
            if match:
                yield line + 1, where, (f"{_describe(match.group())} (written as an escape) is "
                                        "not allowed in a setting")
        yield from escaped_controls(value, where)


def _describe(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return f"control character {_C0_NAMES[code]} (U+{code:04X})"
    if code == 0x7F:
        return "control character DEL (U+007F)"
    return f"{'control character' if code < 0xA0 else 'character'} U+{code:04X}"


def event_problem(name: str) -> str | None:
    """Why `name` cannot be subscribed to or published, or None (custom names are checked at
    start)."""
    if catalogue_event(name) or SCRIPT_EVENT_RE.fullmatch(name) or CUSTOM_EVENT_RE.fullmatch(name):
        return None
    return f"unknown event {name!r} ({close(name, known_names())})"
