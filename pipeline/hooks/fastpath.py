"""Compiled phase runners: for each command phase, one generated function that calls every
stage inline and returns at the first stage that did anything (returned a value or raised).

This is the hot path when stages are declared: a generic loop spends more per stage on
bookkeeping than on the call. The generated code only calls handlers and compares results
with None. Everything else is left to the generic chain (chain.py), which continues from the
stage the fast path stopped at: rewrites, suppressions, errors, counters and timing. The
source is built from a fixed template with the handlers bound as names h0..hN, as attrs does
for __init__: no user text ever reaches it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

#: fast(comm, line, cmd_type, gcode, subcode, tags) -> None when every stage returned None,
#: else (index of the stage that acted, its return value, the exception it raised or None).
FastRunner = Callable[..., "tuple[int, Any, BaseException | None] | None"]


def compile_phase(stages: Sequence[Any], short: str, *, observe: bool) -> FastRunner:
    """Build the runner for `stages` (BoundStage-like: .handler, .positional)."""
    names: dict[str, Any] = {"S": short}
    body = ["def fast(comm, line, cmd_type, gcode, subcode, tags):", "    i = 0", "    try:"]
    for i, st in enumerate(stages):
        names[f"h{i}"] = st.handler
        args = ("comm, S, line, cmd_type, gcode, subcode, tags" if st.positional else
                "comm, S, line, cmd_type, gcode, subcode=subcode, tags=tags")
        body.append(f"        i = {i}")
        if observe:
            body.append(f"        h{i}({args})")
        else:
            body.append(f"        r = h{i}({args})")
            body.append(f"        if r is not None: return {i}, r, None")
    body.append("    except Exception as exc:")
    body.append("        return i, None, exc")
    body.append("    return None")
    code = compile("\n".join(body), f"<printpipe phase runner: {short}>", "exec")
    exec(code, names)  # noqa: S102  (fixed template, handlers bound by name only)
    return names["fast"]
