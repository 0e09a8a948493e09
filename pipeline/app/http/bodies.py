"""Reading the fields of a JSON request body: typed fields, the `command` of a command body,
numbers; every problem a BadRequest (400) that names the field. And the empty 204 answer the
command endpoints give.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from pipeline.app.http.support import BadRequest


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


def number(body: dict[str, Any], name: str) -> float:
    return float(field(body, name, (int, float)))
