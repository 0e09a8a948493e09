"""Running the system commands that `system.additional_commands` stages declare (listed and
run through `/api/system/commands`, as OctoPrint does).

A command is the handler's own text, never built from request data, so it runs like
OctoPrint runs it: `/bin/sh -c COMMAND`, as a real subprocess, with a timeout. Its
`before` callable runs first; `ignore` makes a failure count as success; `async` returns
at once and leaves the command running in the service's nursery. Output is logged.
"""

from __future__ import annotations

import logging

import trio

from pipeline.errors import HostError
from pipeline.hooks.host_phases import SystemCommand

log = logging.getLogger("printpipe.system")

#: Seconds a system command may run before it is killed.
TIMEOUT = 60.0
_TAIL = 2000  # characters of output kept in an error


class SystemCommandFailed(HostError):
    """A system command (or its `before`) failed; the message has its output's tail."""


async def run_system_command(cmd: SystemCommand, nursery: trio.Nursery) -> None:
    """Run `cmd` (in `nursery` when it is async). Raises SystemCommandFailed."""
    shown = f"{cmd.action}: {cmd.command}" if cmd.debug else cmd.action
    log.info("running system command %s", shown)
    if cmd.before is not None:
        try:
            cmd.before()
        except Exception as exc:
            if not cmd.ignore:
                raise SystemCommandFailed(f"the 'before' of {cmd.action} failed: {exc}") from exc
            log.warning("the 'before' of %s failed (ignored): %s", cmd.action, exc)
    if cmd.run_async:
        nursery.start_soon(_run_logged, cmd)
        return
    await _run(cmd)


async def _run_logged(cmd: SystemCommand) -> None:
    try:
        await _run(cmd)
    except SystemCommandFailed as exc:
        log.warning("%s", exc)


async def _run(cmd: SystemCommand) -> None:
    problem: str | None = f"still running after {TIMEOUT:g} s; killed"
    with trio.move_on_after(TIMEOUT):
        problem = await _outcome(cmd)
    if problem is None:
        return
    if cmd.ignore:
        log.warning("system command %s %s (ignored)", cmd.action, problem)
        return
    raise SystemCommandFailed(f"system command {cmd.action} {problem}")


async def _outcome(cmd: SystemCommand) -> str | None:
    """None when the command succeeded, else what went wrong."""
    try:
        done = await trio.run_process(["/bin/sh", "-c", cmd.command], check=False, stdin=b"",
                                      capture_stdout=True, capture_stderr=True)
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if output:
        log.info("system command %s said: %s", cmd.action, output[-_TAIL:])
    if done.returncode == 0:
        return None
    return f"exited with {done.returncode}: {output[-_TAIL:] or 'no output'}"
