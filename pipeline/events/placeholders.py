"""Subscription placeholders (seed 001): what `{__currentZ}`, `{__filename}`, payload keys...
stand for, finding them in a command at load time, and substituting them at firing time.

Commands use Python's format syntax (`{name}`, `{position[x]}`, `{{` for a literal brace).
Values are substituted into one argument at a time (no shell), or shell-quoted when the
subscription runs through a shell. Pure: no IO, no trio.
"""

from __future__ import annotations

import json
import shlex
import string
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: The generic placeholders every firing has (seed 001), besides the payload keys.
GENERIC = ("__currentZ", "__eventname", "__filename", "__filepath", "__fileorigin",
           "__progress", "__data", "__json", "__now")
NO_FILE = "NO FILE"

_FORMATTER = string.Formatter()


class MissingPlaceholder(Exception):
    """A placeholder has no value for this firing."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


@attrs.frozen
class FiringContext:
    """Host state the generic placeholders read, taken when the subscription runs."""

    current_z: float | None = None
    filename: str | None = None
    filepath: str | None = None
    origin: str | None = None
    progress: float | None = None
    now: str = ""


def field_roots(template: str) -> list[str]:
    """The placeholder names a command uses (`{position[x]}` -> `position`), in order.
    Raises ValueError for broken format syntax (an unpaired brace)."""
    roots: list[str] = []
    for _, field, spec, _ in _FORMATTER.parse(template):
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError("positional placeholders ({} or {0}) are not supported; "
                             "name the value, e.g. {__filename}")
        root = field.split(".", 1)[0].split("[", 1)[0]
        roots.append(root)
        if spec:
            roots.extend(field_roots(spec))
    return roots


def params(event: str, payload: Mapping[str, Any], ctx: FiringContext) -> dict[str, Any]:
    """Every value a command of this firing may use; payload keys shadow generic ones."""
    z = ctx.current_z
    out: dict[str, Any] = {
        "__currentZ": "-1" if z is None else f"{z:g}",
        "__eventname": event,
        "__filename": ctx.filename or NO_FILE,
        "__filepath": ctx.filepath or NO_FILE,
        "__fileorigin": ctx.origin or NO_FILE,
        "__progress": "0" if ctx.progress is None else str(round(ctx.progress)),
        "__data": str(dict(payload)),
        "__json": json.dumps(dict(payload), default=str),
        "__now": ctx.now,
    }
    out.update(payload)
    return out


class _Values(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> Any:
        raise MissingPlaceholder(key)


def render(template: str, values: Mapping[str, Any], *, quote: bool = False) -> str:
    """Substitute placeholders; `quote` shell-quotes every value (for `shell: true`).
    Raises MissingPlaceholder naming the first placeholder without a value."""
    out: list[str] = []
    for literal, field, spec, conv in _FORMATTER.parse(template):
        out.append(literal)
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root not in values:
            raise MissingPlaceholder(field)
        try:
            obj, _ = _FORMATTER.get_field(field, (), _Values(values))
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            raise MissingPlaceholder(field) from exc
        obj = _FORMATTER.convert_field(obj, conv)
        text = format(obj, render(spec, values) if spec else "")
        out.append(shlex.quote(text) if quote else text)
    return "".join(out)


def split_argv(command: str) -> tuple[str, ...]:
    """A system command split into arguments once, at load time (POSIX shell words).
    Raises ValueError for unbalanced quotes or an empty command."""
    argv = tuple(shlex.split(command))
    if not argv:
        raise ValueError("the command is empty")
    return argv


def render_argv(argv: Iterable[str], values: Mapping[str, Any]) -> list[str]:
    """Substitute inside each argument: a value never becomes more than one argument."""
    return [render(arg, values) for arg in argv]
