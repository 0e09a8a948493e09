"""How a configuration option is declared: once, as a field of its frozen spec class.

`option(default, validator, check=...)` makes an attrs field whose metadata says how to read the
key from YAML (strictyaml validator, conversion, range check); `text`, `integer`, `number`,
`flag`, `choice`, `optional_integer` and `commands` are its usual shapes, and `subsection(Spec)`
nests a section. The spec's default is the configuration's default, and `Section.of(Spec)`
derives the key table the reader walks, so adding an option is one line in its spec class.

Also the range checks the options share. No trio, no IO, no YAML reading (reader.py does that).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import strictyaml as sy

#: A range check: the problem with a value (the reader prefixes the key), or None.
Check = Callable[[Any], "str | None"]

#: A G-code command word as the command lists hold them: G28, M80.1, T0, or T (any tool).
GCODE_WORD_RE = re.compile(r"[GMT]\d+(?:\.\d+)?|T")

_READING = "printpipe.config"  # the metadata key of an option's Field or a subsection's spec


@attrs.frozen
class Field:
    """How to read one scalar or list key: validate, convert and range-check its value.
    `item_check` runs per item of a sequence value (so errors name the item's line)."""

    validator: sy.Validator
    convert: Callable[[Any], Any] | None = None
    check: Check | None = None
    item_check: Check | None = None


@attrs.frozen
class Section:
    """A mapping key whose value is read into `spec(**fields)`; absent keys keep the default.
    Built from the spec class by `Section.of`, never written by hand."""

    spec: type
    fields: Mapping[str, Field | Section]

    @classmethod
    def of(cls, spec: type) -> Section:
        """The key table of `spec`: one entry per field, each declared by option() or
        subsection() (a field declared otherwise is a TypeError at import)."""
        fields: dict[str, Field | Section] = {}
        for f in attrs.fields(spec):
            reading = f.metadata.get(_READING)
            if reading is None:
                raise TypeError(f"{spec.__name__}.{f.name} is not declared with option() "
                                "or subsection()")
            fields[f.name] = cls.of(reading) if isinstance(reading, type) else reading
        return cls(spec, MappingProxyType(fields))


def options(spec: type) -> dict[str, Field]:
    """The options `spec` declares, by name in declaration order (for sections that are read
    by hand and also have fields that are not options)."""
    return {f.name: f.metadata[_READING] for f in attrs.fields(spec)
            if isinstance(f.metadata.get(_READING), Field)}


# ---------------------------------------------------------------------------------------------
# Declaring options


def option(default: Any, validator: sy.Validator, *, check: Check | None = None,
           convert: Callable[[Any], Any] | None = None, item_check: Check | None = None,
           **field: Any) -> Any:
    """A spec field that is a config option: `default`, and how its key is read.
    Extra keyword arguments go to attrs.field (e.g. `hash=False` for a mapping)."""
    return attrs.field(default=default, **field,
                       metadata={_READING: Field(validator, convert, check, item_check)})


def subsection(spec: type) -> Any:
    """A spec field that is a nested section, read into `spec` (whose defaults are its own)."""
    return attrs.field(default=spec(), metadata={_READING: spec})


def text(default: str | None) -> Any:
    """A string that must not be blank."""
    return option(default, sy.Str(), check=non_blank)


def integer(default: int, check: Check | None = None) -> Any:
    return option(default, sy.Int(), check=check)


def optional_integer(check: Check | None = None) -> Any:
    """An integer or nothing (`key:` with an empty value); None by default."""
    return option(None, sy.EmptyNone() | sy.Int(), check=check)


def number(default: float, check: Check | None = None) -> Any:
    """A float; it must be greater than 0 unless another check is given."""
    return option(default, sy.Float(), check=check or positive)


def flag(default: bool) -> Any:
    return option(default, sy.Bool())


def choice(default: enum.Enum) -> Any:
    """One of the values of `default`'s enum, converted to the member."""
    kind = type(default)
    return option(default, sy.Enum([m.value for m in kind]), convert=kind)


def commands(*default: str) -> Any:
    """A list of G-code command words (an empty value is an empty list), held as a tuple."""
    # One Or at the list level, none inside the Seq.
    return option(default, sy.EmptyList() | sy.Seq(sy.Str()), convert=tuple,
                  item_check=gcode_word)


def frozen_map(data: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of a string map (None, an empty value, is an empty map)."""
    return MappingProxyType(dict(data or {}))


# ---------------------------------------------------------------------------------------------
# Range checks


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        return _finite(value) or (None if value >= low else f"must be at least {low}, not {value}")
    return check


def positive(value: float) -> str | None:
    return _finite(value) or (None if value > 0 else f"must be greater than 0, not {value}")


def rate(value: float) -> str | None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return f"must be a probability between 0 and 1, not {value}"
    return None


def non_blank(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def gcode_word(value: str) -> str | None:
    if GCODE_WORD_RE.fullmatch(value):
        return None
    return (f"{value!r} is not a G-code command word "
            "(expected one like G28, M112, M80.1, T0 or T; case matters)")


def briefly(check: Check, problem: str) -> Check:
    """`check`, reporting the fixed `problem` whenever it finds one."""
    return lambda value: problem if check(value) else None
