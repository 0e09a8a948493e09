"""`printpipe check`: validate a configuration without connecting to a printer.

Loads the YAML (every problem config loading finds, each with file:line and key), then builds
the pipeline exactly as a session would (so handler modules are imported and handler signatures
checked now), and reports every problem on its own line followed by a count. On success it
prints what would run: a header (config, port, baudrate, profile) and, phase by phase in
`Phase` order, each declared stage in run order; with several printers (printers:, printers.d/)
that for each printer, headed by its name. Exit code 0 = valid, 1 = problems found.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

from pipeline.config.reader import (
    HostConfig,
    ServiceConfig,
    StageKind,
    StageSpec,
    load_service_config,
    load_service_config_file,
)
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase


def run_check(path: str | None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the config at `path` (None: the built-in defaults) with its printers.d drop-in
    files; returns the exit code.

    `out`/`err` default to sys.stdout/sys.stderr as they are at call time.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    config, problems = _check(path)
    if problems:
        for problem in problems:
            print(problem, file=err)
        n = len(problems)
        print(f"{n} problem{'s' if n != 1 else ''} found", file=err)
        return 1
    assert config is not None
    where = "built-in defaults" if config.path == "<defaults>" else config.path
    if len(config.printers) == 1:
        (printer,) = config.printers.values()
        _print_pipeline(printer, f"config: {where}  ", out)
    else:
        print(f"config: {where}  printers: {', '.join(config.printers)}", file=out)
        for name, printer in config.printers.items():
            _print_pipeline(printer, f"printer {name}  ", out)
    print("no problems found", file=out)
    return 0


def _check(path: str | None) -> tuple[ServiceConfig | None, list[ConfigError]]:
    """Load, build and check everything; the config (if it loaded) and every problem found."""
    # pipeline/ never imports stages/ at module level (tests/test_layering.py)
    from stages import stage_phases, stage_schemas
    try:
        if path is None:
            config = load_service_config("", "<defaults>", stage_schemas=stage_schemas())
        else:
            config = load_service_config_file(path, stage_schemas=stage_schemas(),
                                              stage_phases=stage_phases())
    except ConfigErrors as exc:
        return None, list(exc.errors)
    # A problem of a shared section shows once; one of some printers only names them.
    found: dict[str, tuple[ConfigError, list[str]]] = {}
    for name, printer in config.printers.items():
        for problem in _printer_problems(printer):
            found.setdefault(str(problem), (problem, []))[1].append(name)
    problems = []
    for problem, names in found.values():
        if len(names) < len(config.printers):
            problem = ConfigError(f"{problem.message} (printer {', '.join(names)})",
                                  path=problem.path, line=problem.line, key=problem.key)
        problems.append(problem)
    # Build errors come in run order (entries sorted by order/id): report them by line.
    problems.sort(key=lambda e: (e.path, e.line or 0))
    return config, problems


def _printer_problems(config: HostConfig) -> list[ConfigError]:
    from pipeline.app.startup import config_problems
    from stages import BUILTIN_STAGES
    problems: list[ConfigError] = []
    try:
        pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES)
    except ConfigErrors as exc:
        problems.extend(exc.errors)
    else:
        problems.extend(config_problems(config, pipeline))  # what serve refuses, too
    problems.extend(check_scripts(config))
    return problems


def check_scripts(config: HostConfig) -> list[ConfigError]:
    """Every problem in the configured G-code scripts: compile errors, then a strict render
    of each script against a sample context (OctoPrint #3985: broken scripts fail silently
    there). Each problem names the script (or snippet) and its line."""
    import os

    from pipeline.hooks.scripts import ScriptSet, profile_context, sample_context
    folder = config.scripts.folder
    if folder and not os.path.isabs(folder) and os.path.exists(config.path):
        folder = os.path.join(os.path.dirname(os.path.abspath(config.path)), folder)
    p = config.printer.profile
    sample = sample_context(profile_context(p.extruders, p.shared_nozzle, p.heated_bed,
                                            p.heated_chamber, p.volume.width, p.volume.depth,
                                            p.volume.height, p.name))
    return [ConfigError(exc.message, path=f"script {exc.script}", line=exc.line)
            for exc in ScriptSet.check_all(folder, config.scripts.gcode, sample,
                                           max_lines=config.scripts.max_lines)]


# -- the success report ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Frozen stage options (mappingproxies, tuples) -> JSON-able dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _options(spec: StageSpec) -> str:
    if spec.kind is not StageKind.BUILTIN:
        return ""
    return json.dumps(_plain(spec.options), sort_keys=True, default=str)


def _stage_row(spec: StageSpec) -> list[str]:
    order = "-" if spec.order is None else str(spec.order)
    return [spec.id, f"order {order}", spec.kind.value, spec.target, _options(spec),
            "" if spec.enabled else "(disabled)"]


def _print_pipeline(config: HostConfig, heading: str, out: TextIO) -> None:
    printer = config.printer
    baud = "0 (auto)" if printer.baudrate == 0 else str(printer.baudrate)
    print(f"{heading}port: {printer.port}  baudrate: {baud}  "
          f"profile: {printer.profile.name}", file=out)
    empty: list[str] = []
    for phase in Phase:
        specs = config.pipeline.for_phase(phase)
        if not specs:
            empty.append(phase.value)
            continue
        print(phase.value, file=out)
        rows = [_stage_row(s) for s in specs]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4], row[5]]
            print("  " + "  ".join(c for c in cells if c).rstrip(), file=out)
    if not empty:
        print("other phases: none", file=out)
    elif len(empty) == len(Phase):
        print("no stages declared in any phase", file=out)
    else:
        print(textwrap.fill("other phases (no stages declared): " + ", ".join(empty),
                            width=100, subsequent_indent="  ", break_on_hyphens=False),
              file=out)
