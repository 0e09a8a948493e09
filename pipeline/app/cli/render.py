"""`printpipe render NAME [-c CONFIG] [--context JSON]`: print the lines a G-code script
renders to, with the `comm.protocol.scripts` stages' prefixes and postfixes, without a printer.
The context is the seed's (profile from the config, positions and temperatures unknown)
with the JSON object given merged over it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pipeline.app.printers.session import offline_core, render_script
from pipeline.config.reader import HostConfig
from pipeline.errors import ScriptError
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES


def render_lines(config: HostConfig, name: str, extra: dict[str, Any]) -> list[str]:
    """The lines script `name` renders to without a printer. Raises ScriptError for a broken
    template, LookupError when no script (and no `comm.protocol.scripts` stage) has the name."""
    return render_script(offline_core(config, build_pipeline(config.pipeline, BUILTIN_STAGES)),
                         name, extra)


def run_render(config: HostConfig, name: str, context_json: str | None, *,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        extra = json.loads(context_json) if context_json else {}
    except json.JSONDecodeError as exc:
        print(f"printpipe: --context is not valid JSON: {exc}", file=err)
        return 2
    if not isinstance(extra, dict):
        print("printpipe: --context must be a JSON object", file=err)
        return 2
    try:
        lines = render_lines(config, name, extra)
    except LookupError as exc:
        print(f"printpipe: {exc.args[0]}", file=err)
        return 2
    except ScriptError as exc:
        print(f"printpipe: {exc}", file=err)
        return 1
    for line in lines:
        print(line, file=out)
    return 0
