"""`printpipe serve`: the whole service: the printer session (connected at start and kept
connected: autoconnect.py) in the printer's own nursery, and beside it, each supervised
(supervise.py: a failure is logged in one line and the task starts again, the printer prints
on), events and subscriptions, the print history, file analyses and the HTTP API
(http/server.py; restarted on the port it had). What can stop a start is checked first, each
as one line (startup.py).

SIGINT/SIGTERM shut down in order, within about SIGNAL_GRACE + LAST_ACT seconds whatever the
printer does: a running print stops at once (no more file lines; the cancel path with the
heaters off; the journal kept, so `printpipe recover` resumes it), event streams end cleanly,
the HTTP server stops (open connections get HTTP_GRACE seconds, then are aborted, so a client
that stopped reading cannot hold the stop) while the printer disconnects
(beforePrinterDisconnected runs; SIGNAL_GRACE seconds at most, then the link is cut and its
last act sends the heaters off), Shutdown is published last. A second signal quits at once,
after the link's last act (the heaters off, LAST_ACT seconds at most).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid as uuidlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, TextIO, cast

import attrs
import trio

from pipeline.app.keys import KeyStore
from pipeline.app.paths import config_relative, state_folder
from pipeline.app.printers.control import PrinterControl
from pipeline.app.service import Service, one_printer
from pipeline.app.startup import (
    announce_key,
    check_listen,
    check_writable,
    listen_error,
    quit_now,
    refuse_problems,
)
from pipeline.app.supervise import Supervisor, supervised
from pipeline.config.printers import ServiceConfig
from pipeline.config.reader import HostConfig
from pipeline.hooks.registry import build_pipeline
from pipeline.link.serial import LAST_ACT

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig
    from starlette.types import ASGIApp

    from pipeline.app.dispatch import PrinterApps
    from pipeline.app.http.context import Api

__all__ = ["Serving", "config_relative", "run_serve", "serve", "state_folder"]

log = logging.getLogger("printpipe.serve")

#: Seconds open HTTP connections get at shutdown before they are aborted (a client that stopped
#: reading included); the stop as a whole is bounded by this, the printer's disconnect
#: (SIGNAL_GRACE, then the link's LAST_ACT) and the subscriptions' `events.shutdown_grace`.
HTTP_GRACE = 2.0


def stable_uuid(folder: str) -> str:
    """The instance uuid clients use as a unique id (Home Assistant): made once, kept."""
    path = os.path.join(folder, "uuid")
    try:
        with open(path, encoding="ascii") as f:
            return str(uuidlib.UUID(f.read().strip()))
    except (OSError, ValueError):
        value = str(uuidlib.uuid4())
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(value + "\n")
        return value


@attrs.define(eq=False)
class Serving:
    """What `serve` hands its caller once the HTTP server listens (tests use it)."""

    urls: list[str]
    key: str | None
    api: object                  # the default printer's (or the first one's) HTTP state
    stop: Callable[[], None]
    service: object = None       # the Service (app/service.py)
    apis: Mapping[str, object] = attrs.Factory(dict)   # each running printer's HTTP state
    ports: Mapping[str, str] = attrs.Factory(dict)     # a printer's own port's URL, by name

    @property
    def url(self) -> str:
        return self.urls[0]


@attrs.frozen
class Prepared:
    """What `serve` checked and made before starting anything."""

    hc: HypercornConfig          # the main port
    own: Mapping[str, HypercornConfig]  # each printer's own port, by name
    state: str                   # the service's state folder (keys.json)
    keys: KeyStore
    key: str | None              # the key clients use (None: anonymous)


def service_config(config: HostConfig | ServiceConfig) -> ServiceConfig:
    return one_printer(config) if isinstance(config, HostConfig) else config


def _bind(host: str, port: int) -> HypercornConfig:
    from hypercorn.config import Config as HypercornConfig
    hc = HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.graceful_timeout = HTTP_GRACE
    hc.accesslog = None
    hc.errorlog = logging.getLogger("printpipe.http.server")
    return hc


def _on_port(config: HostConfig, port: int) -> HostConfig:
    """`config` as if its http.port were `port` (for the messages of a printer's own port)."""
    return attrs.evolve(config, http=attrs.evolve(config.http, port=port))


def prepare(config: ServiceConfig, out: TextIO) -> Prepared:
    """Check what would otherwise fail half-way through the start with a traceback (each
    printer's problems as `printpipe check` finds them, the listening addresses, the folders)
    and make sure there is a key. Raises HostError (exit 1) or ConfigError(s) (exit 2) with
    one line per problem naming it and the next step."""
    from stages import BUILTIN_STAGES
    first = next(iter(config.printers.values()))
    for printer in config.printers.values():
        refuse_problems(printer, build_pipeline(printer.pipeline, BUILTIN_STAGES))
    http = config.http
    hc = _bind(http.host, http.port)
    check_listen(hc, first)
    own = {}
    for name, printer in config.printers.items():
        if printer.http_port is not None:
            own[name] = _bind(http.host, printer.http_port)
            check_listen(own[name], _on_port(printer, printer.http_port))
    for printer in config.printers.values():
        check_writable(state_folder(printer), "storage.state", printer)
        check_writable(config_relative(printer, printer.storage.folder), "storage.folder",
                       printer)
    state = config_relative(first, config.storage.state)
    check_writable(state, "storage.state", first)
    keys = KeyStore(state, configured_key=http.api_key)
    key: str | None = None
    if http.allow_anonymous:
        log.warning("serving WITHOUT API keys on %s (http.allow_anonymous)", http.host)
    else:
        key, created = keys.ensure_master()
        announce_key(key, created, http.api_key is not None, keys.path, out)
    return Prepared(hc, own, state, keys, key)


async def serve(config: HostConfig | ServiceConfig, *,
                loader: Callable[[], HostConfig | ServiceConfig] | None = None,
                out: TextIO | None = None, connect: bool = True, handle_signals: bool = True,
                task_status: trio.TaskStatus[Serving] = trio.TASK_STATUS_IGNORED) -> int:
    out = out or sys.stdout
    sconfig = service_config(config)
    ready = prepare(sconfig, out)
    stop = trio.Event()
    services: list[Service] = []  # the service, once it runs (for a second signal)
    load = None if loader is None else (lambda: service_config(loader()))
    async with trio.open_nursery() as signals:
        if handle_signals:  # for the whole run: a second signal quits during the stop too
            signals.start_soon(_stop_on_signals, stop, services)
        await _serve(sconfig, ready, load, out, connect, stop, task_status, services)
        signals.cancel_scope.cancel()
    return 0


async def _serve(config: ServiceConfig, ready: Prepared,
                 loader: Callable[[], ServiceConfig] | None, out: TextIO, connect: bool,
                 stop: trio.Event, task_status: trio.TaskStatus[Serving],
                 services: list[Service]) -> None:
    from pipeline.app.dispatch import PrinterApps, main_app
    from pipeline.app.http.stream import close_streams
    from pipeline.app.service import SIGNAL_GRACE, open_services

    http = config.http
    async with open_services(config, loader=loader, histories=True) as service:
        services.append(service)
        apps = PrinterApps(service)
        apis: dict[str, Api] = {}
        async with trio.open_nursery() as nursery:
            # (Api only calls its nursery's start_soon)
            analyses = cast(trio.Nursery, Supervisor(nursery, "a file analysis"))
            attach = partial(_attach, service, apps, apis, ready, analyses, connect)
            service.on_printer(attach, partial(_detach, apps, apis))
            stopped = trio.Event()
            binds: list[tuple[str | None, HypercornConfig]] = [(None, ready.hc),
                                                                *ready.own.items()]
            servers = [trio.Event() for _ in binds]
            urls: dict[str | None, list[str]] = {}
            for (name, hc), done in zip(binds, servers, strict=True):
                app = (main_app(apps, ready.keys, anonymous=http.allow_anonymous,
                                host_names=lambda: service.config.http.host_names)
                       if name is None else apps.port_app(name))
                what = "the HTTP server" + ("" if name is None else f" of printer {name}")
                try:
                    urls[name] = await nursery.start(partial(
                        supervised, what, _run_http, app, hc, http.max_concurrent_requests,
                        partial(_printing, service), stopped, done, started=True))
                except OSError as exc:  # taken since check_listen looked
                    first = next(iter(config.printers.values()))
                    target = first if name is None else config.printers[name]
                    port = http.port if name is None else target.http_port or 0
                    raise listen_error(exc, _on_port(target, port)) from None
                # a restart binds the ports this start got (port 0 included)
                hc.bind = [url.removeprefix("http://") for url in urls[name]]
            shown = [*urls[None], *(f"{u} ({n})" for n, us in urls.items() if n for u in us)]
            log.info("HTTP API on %s", ", ".join(shown))
            print(f"printpipe: serving the API on {', '.join(shown)}", file=out)
            out.flush()
            default = config.default or next(iter(config.printers))
            task_status.started(Serving(
                urls[None], ready.key, apis.get(default), stop.set, service, apis,
                {n: us[0] for n, us in urls.items() if n is not None}))
            await stop.wait()
            if service.stop_for_exit():  # first: not one more file line
                log.warning("the print is stopped; `printpipe recover` resumes it")
            for api in apis.values():
                close_streams(api)
            stopped.set()
            async with trio.open_nursery() as stopping:  # the printers and HTTP at once
                stopping.start_soon(service.shutdown, SIGNAL_GRACE)
                with trio.move_on_after(ready.hc.graceful_timeout + 1):
                    for done in servers:
                        await done.wait()
            nursery.cancel_scope.cancel()  # analyses


async def _run_http(app: ASGIApp, hc: HypercornConfig, concurrency: int,
                    busy: Callable[[], bool], stopped: trio.Event, done: trio.Event,
                    task_status: trio.TaskStatus[list[str]]) -> None:
    from pipeline.app.http.server import serve_http
    if not stopped.is_set():  # (a restart while stopping serves nothing)
        await serve_http(app, hc, shutdown_trigger=stopped.wait, concurrency=concurrency,
                         busy=busy, task_status=task_status)
    done.set()


def _printing(service: Service) -> bool:
    """A print runs on any printer (they share the one trio thread): the HTTP servers pace
    their requests (they import no control)."""
    return any(c.printing_path is not None for c in service.printers.values())


def _attach(service: Service, apps: PrinterApps, apis: dict[str, Api], ready: Prepared,
            analyses: trio.Nursery, connect: bool, control: PrinterControl) -> None:
    """A printer runs: its HTTP app (its storage, uuid and live settings), its connection
    keeper."""
    from pipeline.app.http.app import build_app
    from pipeline.app.http.context import Api
    from pipeline.app.http.live import register_live
    from pipeline.app.printers.autoconnect import keep_connected
    from pipeline.files.storage import LocalStorage

    config = control.config
    storage = LocalStorage(config_relative(config, config.storage.folder), control.pipeline,
                           attrs.asdict(config.printer.profile))
    storage.remove_stale_temps()  # left by a crash or kill
    api = Api(control, ready.keys, storage, analyses, version(),
              stable_uuid(state_folder(config)), anonymous=config.http.allow_anonymous,
              reload=service.reload)
    apps.apps[control.name] = build_app(api, config.http.body_limit)
    apis[control.name] = api
    register_live(api, config_relative)
    if connect:
        control.keep_connected(keep_connected)


def _detach(apps: PrinterApps, apis: dict[str, Api], control: PrinterControl) -> None:
    from pipeline.app.http.stream import close_streams
    apps.apps.pop(control.name, None)
    api = apis.pop(control.name, None)
    if api is not None:
        close_streams(api)


def version() -> str:
    """printpipe's version, as installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("printpipe")
    except PackageNotFoundError:  # running from a source tree
        return "0.1.0+source"


async def _stop_on_signals(stop: trio.Event, services: list[Service]) -> None:
    """The first SIGINT/SIGTERM starts the orderly stop; a second one quits at once, after
    the heaters-off of a print still running (the link's last act)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.is_set():
                for service in services:
                    await service.cut(LAST_ACT + 0.5)
                quit_now()
            log.warning("%s: shutting down (again to quit at once)", signal.Signals(signum).name)
            stop.set()


def run_serve(config: ServiceConfig, loader: Callable[[], ServiceConfig]) -> int:
    return trio.run(partial(serve, config, loader=loader))
