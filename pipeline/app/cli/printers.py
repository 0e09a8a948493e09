"""`printpipe printers list | add`: the printers a config declares, and a new printer's drop-in
file (printers.d/NAME.yaml beside the config, what goes under `printers: NAME:`).

`add` refuses a name that is taken or invalid and validates the whole resulting config (the
main file, every drop-in and the new one) before it writes; the file is written atomically
(a hidden temporary file, flushed, then linked into place, which also refuses a file that
appeared meanwhile), mode 0640 and the group of the folder, so the service's user can read it
and others cannot (it may hold per-printer secrets later).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from os import link as hard_link  # by name: `.link` is the session's link to the edge checks
from typing import TextIO

from pipeline.config.printers import name_problem
from pipeline.config.reader import (
    ServiceConfig,
    dropin_folder,
    load_service_config,
    load_service_config_file,
    read_dropins,
    read_text,
)
from pipeline.errors import ConfigErrors


def load_service(path: str | None) -> ServiceConfig:
    """The config at `path` with its drop-ins (None: the built-in defaults)."""
    from stages import stage_phases, stage_schemas
    if path is None:
        return load_service_config("", "<defaults>", stage_schemas=stage_schemas())
    return load_service_config_file(path, stage_schemas=stage_schemas(),
                                    stage_phases=stage_phases())


def run_list(path: str | None, out: TextIO | None = None) -> int:
    """One line per printer: its name, its port and its own HTTP port (- for none)."""
    out = sys.stdout if out is None else out
    config = load_service(path)
    rows = [(name, printer.printer.port, "-" if printer.http_port is None else
             str(printer.http_port)) for name, printer in config.printers.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, port, http in rows:
        print(f"{name.ljust(widths[0])}  {port.ljust(widths[1])}  http {http}", file=out)
    return 0


def dropin_text(name: str, port: str, baudrate: int | None, http_port: int | None) -> str:
    """The drop-in file of a new printer (values JSON-quoted: YAML reads them as written)."""
    lines = [f"# The printer {name}: what goes under `printers: {name}:` (printers add).",
             f"port: {json.dumps(port)}"]
    if baudrate is not None:
        lines.append(f"baudrate: {baudrate}")
    if http_port is not None:
        lines += ["http:", f"  port: {http_port}"]
    return "\n".join(lines) + "\n"


def run_add(path: str, name: str, port: str, baudrate: int | None, http_port: int | None,
            out: TextIO | None = None) -> int:
    """Write printers.d/NAME.yaml beside `path` once the config with it loads clean; the exit
    code (2 with each problem on a line when it would not load; a config that does not load
    already is a ConfigErrors)."""
    from stages import stage_phases, stage_schemas
    out = sys.stdout if out is None else out
    problem = name_problem(name)
    if problem:
        print(f"printpipe printers add: {problem}", file=sys.stderr)
        return 2
    folder = dropin_folder(path)
    target = folder / f"{name}.yaml"
    if target.exists():
        print(f"printpipe printers add: {target} already exists (printer {name!r}); remove "
              "it first to replace it", file=sys.stderr)
        return 1
    text = dropin_text(name, port, baudrate, http_port)
    dropins = {**read_dropins(path), str(target): text}
    try:
        load_service_config(read_text(path), path, stage_schemas=stage_schemas(),
                            stage_phases=stage_phases(), dropins=dropins)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"config error: {error}", file=sys.stderr)
        print(f"printpipe printers add: nothing written: the config with {target} would not "
              "load", file=sys.stderr)
        return 2
    try:
        _create_folder(str(folder), path)
        _write_new(str(target), text)
    except FileExistsError:
        print(f"printpipe printers add: {target} appeared meanwhile; nothing written",
              file=sys.stderr)
        return 1
    except OSError as exc:
        hint = " (sudo printpipe printers add ...)" if isinstance(exc, PermissionError) else ""
        print(f"printpipe printers add: cannot write {target}: {exc.strerror or exc}{hint}",
              file=sys.stderr)
        return 1
    print(f"wrote {target}", file=out)
    return 0


def _create_folder(folder: str, config: str) -> None:
    """The drop-in folder, made (0750, setgid, the config's group) when it is missing."""
    if os.path.isdir(folder):
        return
    os.mkdir(folder, 0o750)
    try:
        os.chown(folder, -1, os.stat(config).st_gid)
        os.chmod(folder, 0o2750)  # files made in it get its group
    except PermissionError:
        os.chmod(folder, 0o750)


def _write_new(target: str, text: str) -> None:
    """`text` as the new file `target` (never over an existing one), all or nothing."""
    folder = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o640)
            with contextlib.suppress(PermissionError):  # not ours to give: ours it is
                os.fchown(f.fileno(), -1, os.stat(folder).st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        hard_link(tmp, target)  # FileExistsError if it appeared meanwhile
    finally:
        os.unlink(tmp)

