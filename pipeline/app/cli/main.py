"""The `printpipe` command line: argument parsing, logging setup and one `trio.run` per command.

Commands: `send` (connect, send G-code through the pipeline, print the replies), `print`
(print a file with a progress bar), `recover` (resume a print a crash interrupted), `render`
(print what a G-code script renders to), `virtual` (serve the built-in virtual printer on a
pty link for any host), `check` (validate a config, report every problem). Each command
returns an exit code; errors are printed as one clear line naming who is at fault, never as a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import trio

from pipeline.config.reader import HostConfig, default_config, load_config_file
from pipeline.errors import ConfigError, ConfigErrors, HostError
from pipeline.session.states import PrinterState


def load(path: str | None) -> HostConfig:
    from stages import stage_phases, stage_schemas
    if path is None:
        return default_config(stage_schemas())
    return load_config_file(path, stage_schemas=stage_schemas(), stage_phases=stage_phases())


async def _send(config: HostConfig, commands: Sequence[str],
                timeout: float) -> int:  # noqa: ASYNC109 (printpipe send --timeout)
    from pipeline.app.service import open_service
    async with open_service(config) as control:
        await control.connect()
        control.on_line(lambda line: print(f"Recv: {line}", flush=True))
        for c in commands:
            print(f"Send: {c}", flush=True)
        control.send(commands, frozenset({"source:cli"}))
        done = await control.wait_idle(timeout)
        status = control.status()
        if status.state in (PrinterState.ERROR, PrinterState.CLOSED_WITH_ERROR):
            print(f"printpipe: printer error: {status.error}", file=sys.stderr)
            return 1
        if not done:
            print(f"printpipe: no answer within {timeout:g} s", file=sys.stderr)
            return 1
    return 0


async def _virtual(config: HostConfig, link: str, record: str | None) -> int:
    from pipeline.link.virtual import run_standalone
    from pipeline.virtual.spec import FirmwareSpec
    await run_standalone(FirmwareSpec.configured(config), link, record=record)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="printpipe", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("send", help="connect, send G-code through the pipeline, show replies")
    p.add_argument("-c", "--config", help="YAML config (default: the built-in virtual printer)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for answers")
    p.add_argument("gcode", nargs="+", help="commands, e.g. M115 'G28 X'")
    p = sub.add_parser("print", help="print a G-code file with a progress bar")
    p.add_argument("-c", "--config", help="YAML config (default: the built-in virtual printer)")
    p.add_argument("file", help="the G-code file")
    p = sub.add_parser("recover", help="resume the print a crash or power cut interrupted")
    p.add_argument("-c", "--config", help="YAML config (default: the built-in virtual printer)")
    p = sub.add_parser("render", help="print the lines a G-code script renders to")
    p.add_argument("-c", "--config", help="YAML config (default: the built-in defaults)")
    p.add_argument("--context", help="JSON object merged over the script context")
    p.add_argument("name", help="the script, e.g. afterPrintCancelled")
    p = sub.add_parser("virtual", help="serve the virtual printer on a pty for any host")
    p.add_argument("-c", "--config", help="YAML config (its printer profile and virtual: section)")
    p.add_argument("--link", dest="link_path", default="/tmp/printpipe-virtual",
                   help="symlink to create for the pty (default /tmp/printpipe-virtual)")
    p.add_argument("--record", help="append every accepted command to this file")
    p = sub.add_parser("serve", help="run the service: printer, events and the HTTP API")
    p.add_argument("-c", "--config", help="YAML config (default: built-in defaults)")
    from pipeline.app.cli.keys import add_keys_parser
    add_keys_parser(sub)
    p = sub.add_parser("check", help="validate a config: report every problem, show the pipeline")
    p.add_argument("-c", "--config", help="YAML config (default: the built-in defaults)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # what subscriptions ran, and their output, is always worth showing
        logging.getLogger("printpipe.subscriptions").setLevel(logging.INFO)
    try:
        if args.command == "check":  # loads the config itself, to report every problem
            from pipeline.app.cli.check import run_check
            return run_check(args.config)
        config = load(args.config)
        if args.command == "serve":
            from pipeline.app.serve import run_serve
            return run_serve(config, lambda: load(args.config))
        if args.command == "keys":
            from pipeline.app.cli.keys import run_keys
            from pipeline.app.serve import state_folder
            return run_keys(args.action, args.arg, state_folder(config))
        if args.command == "send":
            return trio.run(_send, config, args.gcode, args.timeout)
        if args.command == "print":
            from pipeline.app.cli.printing import run_print
            return trio.run(run_print, config, args.file)
        if args.command == "recover":
            from pipeline.app.cli.printing import run_recover
            return trio.run(run_recover, config)
        if args.command == "render":
            from pipeline.app.cli.render import run_render
            return run_render(config, args.name, args.context)
        if args.command == "virtual":
            return trio.run(_virtual, config, args.link_path, args.record)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"config error: {err}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except HostError as exc:
        print(f"printpipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `printpipe send M115 | head -1`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except BaseExceptionGroup as group:  # a lone error trio wrapped on the way out
        inner = group.exceptions[0] if len(group.exceptions) == 1 else None
        if isinstance(inner, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        if isinstance(inner, HostError):
            print(f"printpipe: {inner}", file=sys.stderr)
            return 1
        raise
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
