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
import time
import uuid as uuidlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TextIO, cast

import attrs
import trio

from pipeline.app.control import Control
from pipeline.app.keys import KeyStore
from pipeline.app.paths import config_relative, state_folder
from pipeline.app.startup import (
    announce_key,
    check_listen,
    check_writable,
    listen_error,
    quit_now,
    refuse_problems,
)
from pipeline.app.supervise import Supervisor, supervised
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.files.history import Outcome, PrintHistory, PrintRecord
from pipeline.hooks.registry import build_pipeline
from pipeline.link.serial import LAST_ACT

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

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
    api: object
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        return self.urls[0]


@attrs.frozen
class Prepared:
    """What `serve` checked and made before starting anything."""

    hc: HypercornConfig
    state: str                  # the state folder
    files: str                  # the storage folder
    keys: KeyStore
    key: str | None             # the key clients use (None: anonymous)


def prepare(config: HostConfig, out: TextIO) -> Prepared:
    """Check what would otherwise fail half-way through the start with a traceback (the
    config's problems as `printpipe check` finds them, the listening address, the folders)
    and make sure there is a key. Raises HostError (exit 1) or ConfigError(s) (exit 2) with
    one line per problem naming it and the next step."""
    from hypercorn.config import Config as HypercornConfig

    from stages import BUILTIN_STAGES
    refuse_problems(config, build_pipeline(config.pipeline, BUILTIN_STAGES))
    http = config.http
    hc = HypercornConfig()
    hc.bind = [f"[{http.host}]:{http.port}" if ":" in http.host else f"{http.host}:{http.port}"]
    hc.graceful_timeout = HTTP_GRACE
    hc.accesslog = None
    hc.errorlog = logging.getLogger("printpipe.http.server")
    check_listen(hc, config)
    state = state_folder(config)
    files = config_relative(config, config.storage.folder)
    check_writable(state, "storage.state", config)
    check_writable(files, "storage.folder", config)
    keys = KeyStore(state, configured_key=http.api_key)
    key: str | None = None
    if http.allow_anonymous:
        log.warning("serving WITHOUT API keys on %s (http.allow_anonymous)", http.host)
    else:
        key, created = keys.ensure_master()
        announce_key(key, created, http.api_key is not None, keys.path, out)
    return Prepared(hc, state, files, keys, key)


async def serve(config: HostConfig, *, loader: Callable[[], HostConfig] | None = None,
                out: TextIO | None = None, connect: bool = True, handle_signals: bool = True,
                task_status: trio.TaskStatus[Serving] = trio.TASK_STATUS_IGNORED) -> int:
    out = out or sys.stdout
    ready = prepare(config, out)
    stop = trio.Event()
    controls: list[Control] = []  # the service's, once it runs (for a second signal)
    async with trio.open_nursery() as signals:
        if handle_signals:  # for the whole run: a second signal quits during the stop too
            signals.start_soon(_stop_on_signals, stop, controls)
        await _serve(config, ready, loader, out, connect, stop, task_status, controls)
        signals.cancel_scope.cancel()
    return 0


async def _serve(config: HostConfig, ready: Prepared, loader: Callable[[], HostConfig] | None,
                 out: TextIO, connect: bool, stop: trio.Event,
                 task_status: trio.TaskStatus[Serving], controls: list[Control]) -> None:
    from pipeline.app.autoconnect import keep_connected
    from pipeline.app.http.app import build_app
    from pipeline.app.http.context import Api
    from pipeline.app.http.live import register_live
    from pipeline.app.http.server import serve_http
    from pipeline.app.http.stream import close_streams
    from pipeline.app.service import SIGNAL_GRACE, open_service
    from pipeline.files.storage import LocalStorage

    http, hc = config.http, ready.hc
    async with open_service(config) as control:
        controls.append(control)
        control.loader = loader
        storage = LocalStorage(ready.files, control.pipeline,
                               attrs.asdict(config.printer.profile))
        await trio.to_thread.run_sync(storage.remove_stale_temps)  # left by a crash or kill
        async with trio.open_nursery() as nursery:
            # (Api only calls its nursery's start_soon)
            analyses = cast(trio.Nursery, Supervisor(nursery, "a file analysis"))
            api = Api(control, ready.keys, storage, analyses, version(),
                      stable_uuid(ready.state), anonymous=http.allow_anonymous)
            app = build_app(api, http.body_limit)
            stopped = trio.Event()
            http_done = trio.Event()

            async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
                if not stopped.is_set():  # (a restart while stopping serves nothing)
                    await serve_http(app, hc, shutdown_trigger=stopped.wait,
                                     concurrency=http.max_concurrent_requests,
                                     busy=partial(_printing, control),
                                     task_status=task_status)
                http_done.set()

            try:
                urls = await nursery.start(partial(supervised, "the HTTP server", run_http,
                                                   started=True))
            except OSError as exc:  # taken since check_listen looked
                raise listen_error(exc, config) from None
            # a restart binds the ports this start got (port 0 included)
            hc.bind = [url.removeprefix("http://") for url in urls]
            register_live(api, config_relative)
            log.info("HTTP API on %s", ", ".join(urls))
            print(f"printpipe: serving the API on {', '.join(urls)}", file=out)
            out.flush()
            control.history = history = PrintHistory(ready.state)
            await nursery.start(partial(supervised, "the print history", record_prints,
                                        control, history, started=True))
            if connect:
                control.keep_connected(keep_connected)
            task_status.started(Serving(urls, ready.key, api, stop.set))
            await stop.wait()
            if control.stop_for_exit():  # first: not one more file line
                log.warning("the print is stopped; `printpipe recover` resumes it")
            close_streams(api)
            stopped.set()
            async with trio.open_nursery() as stopping:  # the printer and HTTP at once
                stopping.start_soon(control.shutdown, SIGNAL_GRACE)
                with trio.move_on_after(hc.graceful_timeout + 1):
                    await http_done.wait()
            nursery.cancel_scope.cancel()  # analyses


def _printing(control: Control) -> bool:
    """A print runs: the HTTP server paces its requests (it imports no Control)."""
    printer = control.session
    return printer is not None and printer.core.jobs.active


async def record_prints(control: Control, history: PrintHistory, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Adds every print's end (PrintDone, PrintFailed) to the history, off the event loop."""
    sub = control.subscribe("history", events=frozenset(_ENDS), size=64)
    task_status.started()
    try:
        async for ev in sub:
            if ev.name not in _ENDS:  # Shutdown
                continue
            p = ev.payload
            reason = p.get("reason")
            outcome = (Outcome.SUCCESS if ev.name == Event.PRINT_DONE
                       else Outcome.CANCELLED if reason == "cancelled" else Outcome.FAILURE)
            rec = PrintRecord(str(p.get("path")), outcome, float(p.get("time") or 0.0),
                              time.time(), str(p.get("origin") or "local"), p.get("user"))
            try:
                await trio.to_thread.run_sync(history.record, rec)
            except OSError as exc:  # a full or read-only card must not stop the service
                log.error("could not write the print history %s: %s", history.path, exc)
    finally:
        sub.close()


_ENDS = (Event.PRINT_DONE, Event.PRINT_FAILED)


def version() -> str:
    """printpipe's version, as installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("printpipe")
    except PackageNotFoundError:  # running from a source tree
        return "0.1.0+source"


async def _stop_on_signals(stop: trio.Event, controls: list[Control]) -> None:
    """The first SIGINT/SIGTERM starts the orderly stop; a second one quits at once, after
    the heaters-off of a print still running (the link's last act)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.is_set():
                for control in controls:
                    await control.cut(LAST_ACT + 0.5)
                quit_now()
            log.warning("%s: shutting down (again to quit at once)", signal.Signals(signum).name)
            stop.set()


def run_serve(config: HostConfig, loader: Callable[[], HostConfig]) -> int:
    return trio.run(partial(serve, config, loader=loader))
