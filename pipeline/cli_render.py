"""`printpipe render NAME [-c CONFIG] [--context JSON]`: print the lines a G-code script
renders to, with the `comm.protocol.scripts` stages' prefixes and postfixes, without a printer.
The context is the seed's (profile from the config, positions and temperatures unknown)
with the JSON object given merged over it.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .config import HostConfig
from .errors import ScriptError


def run_render(config: HostConfig, name: str, context_json: str | None, *,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    from stages import BUILTIN_STAGES

    from .host import HostCore
    from .registry import build_pipeline
    from .session import load_scripts
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
        scripts = load_scripts(config)
        core = HostCore(config, build_pipeline(config.pipeline, BUILTIN_STAGES),
                        clock=lambda: 0.0, scripts=scripts)
        from .phases import Phase
        if not scripts.has(name) and not core.pipeline.for_phase(Phase.SCRIPTS):
            known = ", ".join(scripts.names()) or "none"
            print(f"printpipe: no script named {name!r} (known: {known})", file=err)
            return 2
        cmds = core.scripts.render(name, extra)
    except ScriptError as exc:
        print(f"printpipe: {exc}", file=err)
        return 1
    for cmd in cmds:
        print(cmd.line, file=out)
    return 0
