"""Reading the fields of a JSON request body: typed fields, the `command` of a command body,
numbers (finite, in a stated range, written the way G-code reads them), OctoPrint's rate
factors and the `%(name)s` parameters of `/api/printer/command`; every problem a BadRequest
(400) that names the field. And the empty 204 answer the command endpoints give.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs
from starlette.responses import Response

from pipeline.app.http.support import BadRequest
from pipeline.gcode import LINE_BREAK, split_lines

#: What the commands of one request may come to with their parameters filled in: as much as
#: a JSON body may hold (read_json's limit), so parameters never make a request larger.
MAX_EXPANSION = 1024 * 1024
#: `%%`, `%(name)s`, or a `%` that starts neither (a bare `%` is then refused).
_PLACEHOLDER = re.compile(r"%(?:%|\(([^)]*)\)s)?")


def done() -> Response:
    """The answer of a command that was accepted: 204, no body."""
    return Response(status_code=204)


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *,
          required: bool = True, default: Any = None) -> Any:
    """`body[name]` if it is a `kind` (a boolean is never a number)."""
    if name not in body:
        if required:
            raise BadRequest(f"missing field {name!r}")
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadRequest(f"field {name!r} must be a number, not a boolean")
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"field {name!r} must be {want}, got {type(value).__name__}")
    return value


def command(body: dict[str, Any], allowed: tuple[str, ...]) -> str:
    """The body's `command`, one of `allowed`."""
    cmd = field(body, "command", str)
    if cmd not in allowed:
        raise BadRequest(f"unknown command {cmd!r} (known: {', '.join(allowed)})")
    return str(cmd)


# ---- numbers ------------------------------------------------------------------------------
@attrs.frozen
class Range:
    """The numbers a field accepts: `low` to `high`, both included."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        # exact for integers of any size; NaN compares false, so it is never in a range
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"between {self.low:g} and {self.high:g}"


#: Feed and flow rate factors in percent. OctoPrint takes any factor from 1 % (it dropped its
#: upper limits in 1.4.1); 10 to 999 % is what Marlin's own menus offer.
PERCENT = Range(10, 999)


def finite(value: Any, name: str, allowed: Range) -> float:
    """`value` as a float when it is a number in `allowed`: never a boolean, NaN, an infinity
    or an integer too large for a float."""
    if isinstance(value, bool):
        raise BadRequest(f"field {name!r} must be a number, not a boolean")
    if not isinstance(value, (int, float)):
        raise BadRequest(f"field {name!r} must be a number, got {type(value).__name__}")
    if value not in allowed:
        raise BadRequest(f"field {name!r} must be {allowed}, got {_shown(value)}")
    return float(value)


def number(body: dict[str, Any], name: str, allowed: Range, *,
           default: float | None = None) -> float:
    """`body[name]`, a number in `allowed`; `default` when absent (missing field without one)."""
    if default is not None and name not in body:
        return default
    return finite(field(body, name, (int, float)), name, allowed)


def percentage(body: dict[str, Any], name: str, allowed: Range = PERCENT) -> int:
    """A rate factor read as OctoPrint reads it: an integer is a percentage (95), a number
    written with a fraction or exponent is a fraction of 1 (0.95). The whole percentage."""
    value = field(body, name, (int, float))
    # rounded, so that 9.99 is 999 % and not 999.0000000000001
    percent = value if isinstance(value, int) else round(value * 100, 6)
    if percent not in allowed:
        raise BadRequest(
            f"field {name!r} must be a percentage {allowed} as an integer (95), or a fraction "
            f"between {allowed.low / 100:g} and {allowed.high / 100:g} (0.95); "
            f"got {_shown(value)}")
    return round(percent)


def gcode_number(value: float) -> str:
    """`value` as a G-code parameter: plain decimals, at most four, never an exponent."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _shown(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10 ** 16:
        return f"a {math.floor(math.log10(abs(value))) + 1}-digit integer"
    return repr(value)


# ---- commands with parameters -------------------------------------------------------------
def parameters(body: dict[str, Any]) -> dict[str, str]:
    """The body's `parameters`, each as the text a `%(name)s` stands for: strings without
    line breaks, and finite numbers (the JSON reader refuses other numbers)."""
    given = field(body, "parameters", dict, required=False, default={})
    texts: dict[str, str] = {}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind = "a boolean" if isinstance(value, bool) else type(value).__name__
            raise BadRequest(f"parameter {name!r} must be a string or a number, not {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"parameter {name!r} must be a finite number, got {value!r}")
        try:
            text = value if isinstance(value, str) else str(value)
        except ValueError:  # an integer past int-to-text's digit limit
            raise BadRequest(f"parameter {name!r} is too long a number") from None
        _refuse_line_break(text, f"parameter {name!r}")
        texts[name] = text
    return texts


def script_context(body: dict[str, Any]) -> dict[str, Any]:
    """What a script request adds to the script's context: the body's `context` object, and
    its `parameters` (OctoPrint's name for them) as `parameters`. No text anywhere in them, key
    or value, may hold a line break of any kind: a value printed into a command could
    otherwise add a line (BadRequest naming where it is)."""
    context = field(body, "context", dict, required=False, default={})
    params = field(body, "parameters", dict, required=False, default=None)
    _check_texts(context, "context")
    if params is not None:
        _check_texts(params, "parameters")
        context = {**context, "parameters": params}
    return dict(context)


def _check_texts(value: Any, name: str) -> None:
    """Every string in `value` (nested objects and lists too) without line breaks."""
    stack: list[tuple[str, Any]] = [(name, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            _refuse_line_break(node, where)
        elif isinstance(node, dict):
            for key, item in node.items():
                _refuse_line_break(key, f"a key of {where}")
                stack.append((f"{where}.{key}", item))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))


def _refuse_line_break(text: str, where: str) -> None:
    m = LINE_BREAK.search(text)
    if m is not None:
        raise BadRequest(f"{where} holds a line break (U+{ord(m.group()):04X}): a value "
                         "may not add a command")


def command_lines(commands: list[str], params: Mapping[str, str], limit: int) -> list[str]:
    """The lines `commands` send. With `params`, as OctoPrint does it: each `%(name)s` becomes
    its parameter and `%%` a `%` (without, a `%` is sent as it is). Then split at line
    breaks, blank lines dropped. BadRequest for any other `%` sequence (width, precision,
    `%s`), a parameter that is not given, a line over `limit` bytes or an expansion past
    MAX_EXPANSION, which is checked as it grows."""
    budget = MAX_EXPANSION
    lines: list[str] = []
    for n, cmd in enumerate(commands, 1):
        if params:
            cmd = _fill(cmd, params, budget, n)
        budget -= len(cmd)
        for line in split_lines(cmd):
            if not line.strip():
                continue
            size = len(line.encode())
            if size > limit:
                raise BadRequest(f"command {n} makes a line of {size} bytes: the printer "
                                 f"takes {limit} (serial.max_line_length)")
            lines.append(line)
    return lines


def _fill(cmd: str, params: Mapping[str, str], budget: int, n: int) -> str:
    pieces: list[str] = []
    size = pos = 0
    for match in _PLACEHOLDER.finditer(cmd):
        name = match.group(1)
        if match.group() == "%%":
            value = "%"
        elif name is None:
            bad = cmd[match.start():match.start() + 12]
            raise BadRequest(f"command {n}: {bad!r} is not a placeholder this API fills: only "
                             "%(name)s and %% are (a % is written %% when parameters are given)")
        elif name not in params:
            raise BadRequest(f"command {n} uses %({name})s but parameters has no {name!r}")
        else:
            value = params[name]
        literal = cmd[pos:match.start()]
        size += len(literal) + len(value)
        if size > budget:
            raise BadRequest(f"the commands with their parameters filled in come to more than "
                             f"{MAX_EXPANSION} characters")
        pieces += (literal, value)
        pos = match.end()
    pieces.append(cmd[pos:])
    return "".join(pieces)
