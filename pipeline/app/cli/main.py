"""The `printpipe` command line: argument parsing, logging setup and one `trio.run` per command.

Commands: `send` (connect, send G-code through the pipeline, print the replies), `print`
(print a file with a progress bar), `sd` (the printer's SD card: sdcard.py), `recover`
(resume a print a crash interrupted), `render`
(print what a G-code script renders to), `virtual` (serve the built-in virtual printer on a
pty link for any host) -- each drives one printer, `--printer NAME` of a config of several --,
`status` (one line per printer of a running service, over its API), `check` (validate a
config, report every problem), `printers` (list a config's printers, add one as a drop-in
file), `serve` and `keys`. Each command returns an
exit code (2 for a config error, 1 for the rest, 130 after Ctrl-C); errors are printed as one
clear line naming who is at fault, never as a traceback. Logging: logs.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial

import trio

from pipeline.app.cli.interrupts import Interrupts, run_interruptible
from pipeline.app.startup import INTERRUPTED
from pipeline.config.printers import ServiceConfig
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError, ConfigErrors, HostError
from pipeline.session.states import PrinterState


def load(path: str | None) -> ServiceConfig:
    """The config at `path` with its printers.d drop-ins (None: the built-in defaults)."""
    from pipeline.app.cli.printers import load_service
    return load_service(path)


def pick(config: ServiceConfig, name: str | None) -> HostConfig:
    """The printer `--printer NAME` names, else the default (or only) one; a ConfigError
    listing the printers when there is no such printer, or no default to fall back on."""
    names = ", ".join(config.printers)
    if name is None:
        name = config.default
        if name is None:
            raise ConfigError(f"the configuration has several printers ({names}): name one "
                              "with --printer NAME", path=config.path)
    printer = config.printers.get(name)
    if printer is None:
        raise ConfigError(f"no printer named {name!r} (the printers are {names})",
                          path=config.path)
    return printer


async def _send(config: HostConfig, commands: Sequence[str],
                timeout: float,  # noqa: ASYNC109 (printpipe send --timeout)
                interrupts: Interrupts) -> int:
    from pipeline.app.service import open_service
    from pipeline.events.names import Event
    async with open_service(config) as control:
        def stop_now() -> None:
            control.abandon()
            interrupts.stop()

        interrupts.on_first = stop_now
        suppressed = control.subscribe("cli-send", events=frozenset({Event.COMMAND_SUPPRESSED}),
                                       size=len(commands) + 16)
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
        not_sent = []
        while True:
            try:
                not_sent.append(suppressed.receive_nowait().payload["message"])
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for message in not_sent:
            print(f"printpipe: {message}", file=sys.stderr)
        if not done:
            print(f"printpipe: no answer within {timeout:g} s", file=sys.stderr)
            return 1
    return 1 if not_sent else 0


async def _virtual(config: HostConfig, link: str, record: str | None,
                   interrupts: Interrupts) -> int:
    from pipeline.link.virtual import run_standalone
    from pipeline.virtual.spec import FirmwareSpec
    await run_standalone(FirmwareSpec.configured(config), link, record=record)
    return 0


#: The config `printpipe keys` uses without -c when tools/install.sh installed one: the
#: service's, so approvals reach the key store the service reads.
INSTALLED_CONFIG = "/etc/printpipe/printer.yaml"

_DESCRIPTION = """printpipe: a 3D printer host for a printer on a USB serial port, with an
OctoPrint-compatible API for slicers and Home Assistant."""
_EPILOG = """examples:
  printpipe print cube.gcode                  print on the built-in virtual printer
  printpipe print -c printer.yaml cube.gcode  print on the printer printer.yaml describes
  printpipe recover -c printer.yaml           resume the print a power cut interrupted
  printpipe send -c printer.yaml M115         ask the printer for its firmware
  printpipe print -c farm.yaml --printer ender cube.gcode
                                              print on one printer of several
  printpipe status                            the installed service's printers, one a line
  printpipe check -c printer.yaml             check a config
  sudo printpipe printers add ender --port /dev/serial/by-id/usb-...-if00
                                              add a printer to the installed service
  sudo printpipe keys list                    application keys of the installed service

Without -c the built-in virtual printer is used (keys: the installed service's config,
/etc/printpipe/printer.yaml, when there is one). Run `printpipe COMMAND --help` for a
command's options."""
_CONFIG_HELP = "the YAML config (default: the built-in virtual printer)"
_PRINTER_HELP = "the printer of the config to drive (default: `default`, or the only one)"
_INSTALLED_HELP = f"the YAML config (default: the installed service's, {INSTALLED_CONFIG})"


def build_parser() -> argparse.ArgumentParser:
    from pipeline.app.serve import version
    parser = argparse.ArgumentParser(prog="printpipe", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"printpipe {version()} (Python {sys.version.split()[0]})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("print", help="print a G-code file with a progress bar")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("file", help="the G-code file")
    p = sub.add_parser("recover", help="resume the print a crash or power cut interrupted")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("file", nargs="?", help="the interrupted print's file, when it lies outside "
                   "the storage folder (a `printpipe print` of it)")
    p = sub.add_parser("send", help="send G-code commands and show the printer's replies")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for answers")
    p.add_argument("gcode", nargs="+", help="commands, e.g. M115 'G28 X'")
    p = sub.add_parser("sd", help="the printer's SD card: list, upload, print, delete")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("action", choices=("list", "upload", "print", "delete"))
    p.add_argument("arg", nargs="?", metavar="FILE|NAME",
                   help="upload: the G-code file; print, delete: its name on the card")
    p = sub.add_parser("serve", help="run the service: printer, events and the HTTP API")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    from pipeline.app.cli.keys import add_keys_parser
    add_keys_parser(sub)
    p = sub.add_parser("status", help="one line per printer of the running service: state, "
                                      "file, progress, temperatures")
    p.add_argument("-c", "--config", help=_INSTALLED_HELP)
    p = sub.add_parser("check", help="check a config: report every problem, show the pipeline")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    _add_printers_parser(sub)
    p = sub.add_parser("render", help="show the lines a G-code script renders to")
    p.add_argument("-c", "--config", help=_CONFIG_HELP)
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("--context", help="JSON object merged over the script context")
    p.add_argument("name", help="the script, e.g. afterPrintCancelled")
    p = sub.add_parser("virtual", help="serve the virtual printer on a pty, for any host")
    p.add_argument("-c", "--config", help="YAML config (its printer profile and virtual: section)")
    p.add_argument("--printer", help=_PRINTER_HELP)
    p.add_argument("--link", dest="link_path", default="/tmp/printpipe-virtual",
                   help="symlink to create for the pty (default /tmp/printpipe-virtual)")
    p.add_argument("--record", help="append every accepted command to this file")
    return parser


def _add_printers_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("printers", help="list the printers of a config, add one",
                       description="The printers a config declares (printers:, and one file "
                       "per printer in the printers.d folder beside it).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="one line per printer: name, port, own HTTP port")
    a.add_argument("-c", "--config", help=_INSTALLED_HELP)
    a = actions.add_parser("add", help="write printers.d/NAME.yaml beside the config")
    a.add_argument("name", help="the printer's name: 1 to 32 of a-z, 0-9 and -")
    a.add_argument("--port", required=True,
                   help="its serial port, best a stable /dev/serial/by-id/... name")
    a.add_argument("--baudrate", type=int, help="its baud rate (default 115200; 0: try them)")
    a.add_argument("--http-port", type=int, help="its own OctoPrint-compatible HTTP port")
    a.add_argument("-c", "--config", help=_INSTALLED_HELP)


def _installed_or(path: str | None) -> str | None:
    """`path`, or the installed service's config when there is one."""
    if path is None and os.path.exists(INSTALLED_CONFIG):
        return INSTALLED_CONFIG
    return path


def _printers(args: argparse.Namespace) -> int:
    from pipeline.app.cli.printers import run_add, run_list
    path = _installed_or(args.config)
    if args.action == "list":
        return run_list(path)
    if path is None:
        print("printpipe printers add: give the config to add the printer to (-c CONFIG); "
              "the built-in defaults have no file", file=sys.stderr)
        return 2
    return run_add(path, args.name, args.port, args.baudrate, args.http_port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.app.cli.logs import setup_logging
    setup_logging(verbose=args.verbose, service=args.command == "serve")
    try:
        return _run(args)
    except BaseException as exc:  # noqa: BLE001 (every ending becomes an exit code and a line)
        return _ending(exc)


def _run(args: argparse.Namespace) -> int:
    if args.command == "check":  # loads the config itself, to report every problem
        from pipeline.app.cli.check import run_check
        return run_check(args.config)
    if args.command == "printers":
        return _printers(args)
    if args.command == "keys":
        from pipeline.app.cli.keys import run_keys
        from pipeline.app.paths import config_relative
        path = args.config
        if path is None and os.path.exists(INSTALLED_CONFIG):
            path = INSTALLED_CONFIG
            if not os.access(path, os.R_OK):
                print(f"printpipe keys: the installed service's keys ({path}) need root: "
                      f"sudo printpipe keys {args.action}", file=sys.stderr)
                return 1
        service = load(path)
        first = next(iter(service.printers.values()))
        return run_keys(args.action, args.arg, config_relative(first, service.storage.state),
                        configured_key=service.http.api_key, printer=args.printer)
    if args.command == "status":
        from pipeline.app.cli.status import run_status
        return run_status(load(_installed_or(args.config)))
    if args.command == "serve":
        from pipeline.app.serve import run_serve
        return run_serve(load(args.config), lambda: load(args.config))
    config = pick(load(args.config), args.printer)
    if args.command == "send":
        return trio.run(run_interruptible, partial(_send, config, args.gcode, args.timeout))
    if args.command == "print":
        from pipeline.app.cli.printing import run_print
        return trio.run(run_interruptible, partial(run_print, config, args.file))
    if args.command == "recover":
        from pipeline.app.cli.printing import run_recover
        return trio.run(run_interruptible, partial(run_recover, config, args.file))
    if args.command == "sd":
        from pipeline.app.cli.sdcard import run_sd
        return trio.run(run_interruptible, partial(run_sd, config, args.action, args.arg))
    if args.command == "render":
        from pipeline.app.cli.render import run_render
        return run_render(config, args.name, args.context)
    if args.command == "virtual":
        code = trio.run(run_interruptible,
                        partial(_virtual, config, args.link_path, args.record))
        print("virtual printer stopped", flush=True)
        return 0 if code == INTERRUPTED else code
    return 2


def _ending(exc: BaseException) -> int:
    """The exit code for what ended a command, after one line on stderr saying why."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = _leaves(exc)
        if len(leaves) != 1:
            raise exc
        exc = leaves[0]
    if isinstance(exc, ConfigErrors):
        for err in exc.errors:
            print(f"config error: {err}", file=sys.stderr)
        return 2
    if isinstance(exc, ConfigError):
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, HostError):
        print(f"printpipe: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # `printpipe send M115 | head -1`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    raise exc


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
