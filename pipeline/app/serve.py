"""`printpipe serve`: the whole service in one trio nursery: the printer session (connected at
start, in the background), events and subscriptions, and the HTTP API (http/server.py).
SIGINT/SIGTERM shut down in order: event streams end cleanly, the HTTP server stops (open
connections get HTTP_GRACE seconds, then are aborted, so a client that stopped reading cannot
hold the stop), the printer disconnects (beforePrinterDisconnected runs), Shutdown is
published last.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from functools import partial
from typing import TextIO

import attrs
import trio

from pipeline.app.control import Control
from pipeline.app.keys import KeyStore, redact
from pipeline.app.paths import config_relative, state_folder
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError, HostError
from pipeline.events.names import Event
from pipeline.files.history import Outcome, PrintHistory, PrintRecord

__all__ = ["Serving", "config_relative", "run_serve", "serve", "state_folder"]

log = logging.getLogger("printpipe.serve")

#: Seconds open HTTP connections get at shutdown before they are aborted (a client that stopped
#: reading included); the stop as a whole is bounded by this, the printer's disconnect
#: (service.DISCONNECT_GRACE) and the subscriptions' `events.shutdown_grace`.
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


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


async def serve(config: HostConfig, *, loader: Callable[[], HostConfig] | None = None,
                out: TextIO | None = None, connect: bool = True, handle_signals: bool = True,
                task_status: trio.TaskStatus[Serving] = trio.TASK_STATUS_IGNORED) -> int:
    from hypercorn.config import Config as HypercornConfig

    from pipeline.app.http.app import build_app
    from pipeline.app.http.context import Api
    from pipeline.app.http.live import register_live
    from pipeline.app.http.server import serve_http
    from pipeline.app.http.stream import close_streams
    from pipeline.app.service import open_service
    from pipeline.files.storage import LocalStorage

    out = out or sys.stdout
    http = config.http
    if http.allow_anonymous and not _loopback(http.host):
        raise ConfigError(f"http.allow_anonymous needs a loopback host, not {http.host!r}: "
                          "anyone on the network could drive the printer", path=config.path)
    state = state_folder(config)
    keys = KeyStore(state, configured_key=http.api_key)
    key: str | None = None
    if http.allow_anonymous:
        log.warning("serving WITHOUT API keys on %s (http.allow_anonymous)", http.host)
    else:
        key, created = keys.ensure_master()
        if created:
            print(f"printpipe: a new API key was generated and stored in {keys.path} (0600):\n"
                  f"    {key}\nGive it to your slicer as the OctoPrint API key.", file=out)
        else:
            source = "http.api_key" if http.api_key else keys.path
            print(f"printpipe: API key {redact(key)} (from {source})", file=out)
        out.flush()
    stop = trio.Event()
    async with open_service(config) as control:
        control.loader = loader
        files = config_relative(config, config.storage.folder)
        storage = LocalStorage(files, control.pipeline, attrs.asdict(config.printer.profile))
        await trio.to_thread.run_sync(storage.remove_stale_temps)  # left by a crash or kill
        async with trio.open_nursery() as nursery:
            api = Api(control, keys, storage, nursery, _version(),
                      stable_uuid(state), anonymous=http.allow_anonymous)
            hc = HypercornConfig()
            hc.bind = [f"[{http.host}]:{http.port}" if ":" in http.host
                       else f"{http.host}:{http.port}"]
            hc.graceful_timeout = HTTP_GRACE
            hc.accesslog = None
            hc.errorlog = logging.getLogger("printpipe.http.server")
            stopped = trio.Event()
            http_done = trio.Event()

            async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await serve_http(build_app(api, http.body_limit), hc,
                                     shutdown_trigger=stopped.wait, task_status=task_status)
                finally:
                    http_done.set()

            urls = await nursery.start(run_http)
            register_live(api, config_relative)
            log.info("HTTP API on %s", ", ".join(urls))
            print(f"printpipe: serving the API on {', '.join(urls)}", file=out)
            out.flush()
            if handle_signals:
                nursery.start_soon(_stop_on_signals, stop)
            control.history = history = PrintHistory(state)
            await nursery.start(record_prints, control, history)
            if connect:
                nursery.start_soon(_connect, control)
            task_status.started(Serving(urls, key, api, stop.set))
            await stop.wait()
            close_streams(api)
            stopped.set()
            with trio.move_on_after(hc.graceful_timeout + 1):
                await http_done.wait()
            nursery.cancel_scope.cancel()  # analyses and the signal watcher
    return 0


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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("printpipe")
    except PackageNotFoundError:  # running from a source tree
        return "0.1.0+source"


async def _connect(control: Control) -> None:
    try:
        await control.connect()
    except HostError as exc:
        log.error("could not connect to the printer: %s (POST /api/connection to retry)", exc)


async def _stop_on_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("%s: shutting down", signal.Signals(signum).name)
            stop.set()
            return


def run_serve(config: HostConfig, loader: Callable[[], HostConfig]) -> int:
    return trio.run(partial(serve, config, loader=loader))
