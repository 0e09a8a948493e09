"""What every section reader of the configuration shares: small helpers over strictyaml nodes
(the line of a key, whether a value is blank, a did-you-mean hint) and `Reporter`, the narrow
view of the document reader that a section reader gets to report into.

reader.py walks the document and implements `Reporter`; sections.py reads its sections through
one. Both import this module and neither imports the other's internals. No trio, no IO.
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol

import strictyaml as sy

from pipeline.config.options import Field
from pipeline.errors import ConfigError


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
