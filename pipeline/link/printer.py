"""A printer session for the CLI, the benchmark and the tests: opens the port (the built-in
virtual printer on a pty for port `virtual`, a scan for `auto`), builds the pipeline, runs the
link in a nursery and offers small awaitable helpers (send, wait for idle, disconnect).

Everything lives inside the caller's `async with open_printer(...)`: leaving it closes the
port and stops every task.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType

import attrs
import trio

from pipeline.config.reader import HostConfig
from pipeline.errors import LinkBroken
from pipeline.events.names import Event
from pipeline.gcode import NO_TAGS
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.scripts import ScriptSet
from pipeline.link.serial import SerialLink
from pipeline.link.trace import SerialTrace, TracingTransport
from pipeline.link.transport import BAUD_CANDIDATES, SerialTransport, candidate_ports, open_port
from pipeline.link.virtual import VirtualPrinterHandle, serve_virtual_printer
from pipeline.phases import Phase
from pipeline.session.core import HostCore, Listener
from pipeline.session.facade import CommFacade
from pipeline.session.filejob import CHUNK, FileJob, JobFile, not_gcode
from pipeline.session.jobs import JobResult, JobStateError
from pipeline.session.recovery import FileIdentity, Journal, recovery_context
from pipeline.session.sd.upload import SdUpload
from pipeline.virtual.firmware import FirmwareSpec

log = logging.getLogger("printpipe.session")


def load_scripts(config: HostConfig) -> ScriptSet:
    """The configured G-code scripts, compiled (a broken template raises ScriptError)."""
    folder = config.scripts.folder
    if folder and not os.path.isabs(folder) and os.path.exists(config.path):
        folder = os.path.join(os.path.dirname(os.path.abspath(config.path)), folder)
    return ScriptSet.load(folder, config.scripts.gcode, max_lines=config.scripts.max_lines)


#: Seconds an orderly disconnect waits for the queue (and beforePrinterDisconnected) to drain.
DISCONNECT_DRAIN = 10.0

@attrs.define(eq=False)
class Printer:
    core: HostCore
    link: SerialLink
    virtual: VirtualPrinterHandle | None
    nursery: trio.Nursery

    def send(self, lines: Iterable[str], *, tags: frozenset[str] = NO_TAGS) -> int:
        """Queue commands (through the queuing phase); returns how many were queued."""
        return sum(1 for line in lines if self.core.enqueue(line, tags=tags))

    async def wait_until(
            self, predicate: Callable[[], bool],
            timeout: float = math.inf,  # noqa: ASYNC109 (answers whether it held, as Event.wait)
            *, poll: float | None = None) -> bool:
        """Wait until `predicate()` holds or time runs out. Checked after every link activity,
        or every `poll` seconds (use that during prints: it keeps the waiter off the hot path)."""
        with trio.move_on_after(timeout):
            while not predicate():
                if poll is not None:
                    await trio.sleep(poll)
                    continue
                if self.link.closed.is_set():
                    return predicate()
                with trio.move_on_after(0.2):
                    await self.link.wait_changed()
            return True
        return False

    async def wait_idle(self, timeout: float = math.inf) -> bool:  # noqa: ASYNC109 (as above)
        return await self.wait_until(lambda: self.core.idle or self.core.failed, timeout)

    async def start_print(self, path: str, *, name: str | None = None,
                          display_path: str | None = None, user: str | None = None,
                          resume: Journal | None = None) -> FileJob:
        """Start printing a local file; lines stream from disk in chunks as they are needed.
        `display_path` is the path events and the API show (the storage-relative one). With
        `resume` (a crash journal) the print continues after the journal's last acknowledged
        line, beforePrintRecovered first.

        Raises JobStateError, and sends nothing, when the file is not G-code text."""
        path = os.fspath(await trio.Path(path).absolute())
        st = await trio.Path(path).stat()
        file = JobFile(name or os.path.basename(path), display_path or path, st.st_size,
                       user=user)
        job = FileJob(file)
        f = await trio.open_file(path, "rb")
        if resume is not None:
            job.start_at(resume.filepos, resume.line)
            await f.seek(resume.filepos)
        first = await f.read(CHUNK)
        refused = not_gcode(job.file.name, first)
        if refused is not None:
            await f.aclose()
            raise JobStateError(refused)
        job.feed(first)
        core = self.core
        try:
            core.jobs.start(job, recovery=recovery_context(resume) if resume else None)
        except JobStateError:
            await f.aclose()
            raise
        # Nothing of the job was written yet (that happens in the link task, later).
        core.journal.begin(FileIdentity(path, file.name, file.path,
                                        st.st_size, st.st_mtime_ns, file.origin), resume)
        self.nursery.start_soon(self._stream, job, f)
        return job

    async def upload_to_sd(self, path: str, *, name: str | None = None,
                           remote: str | None = None) -> SdUpload | str:
        """Upload a stored file to the printer's SD card: a `printer.sdcardupload` stage may
        take it over (its remote name is returned), else the built-in upload starts (text
        mode or Marlin's binary transfer) and its bytes stream from disk as they are needed.
        Raises SdError (a JobStateError) when the card or the printer's state refuses it,
        JobStateError when the file is not G-code text."""
        path = os.fspath(await trio.Path(path).absolute())
        name = name or os.path.basename(path)
        taken = self.core.sd_lane.hooked_upload(name, path)
        if taken is not None:
            return taken
        st = await trio.Path(path).stat()
        f = await trio.open_file(path, "rb")
        first = await f.read(CHUNK)
        refused = not_gcode(name, first)
        if refused is not None:
            await f.aclose()
            raise JobStateError(refused)
        try:
            up = self.core.sd.start_upload(local=name, size=st.st_size, remote=remote)
        except JobStateError:
            await f.aclose()
            raise
        up.feed(first)
        self.core.wake()
        self.nursery.start_soon(self._stream, up, f)
        return up

    async def wait_upload(self, timeout: float = math.inf  # noqa: ASYNC109 (as wait_until)
                          ) -> tuple[str, str, str] | None:
        """Wait until no upload runs; the last one's (local, remote, "" or why it failed)."""
        sd = self.core.sd
        await self.wait_until(lambda: sd.upload is None, timeout, poll=0.05)
        return sd.last_upload

    async def _stream(self, job: FileJob | SdUpload, f: trio.abc.AsyncResource) -> None:
        hungry = trio.Event()

        def on_hungry() -> None:
            hungry.set()

        job.on_hungry = on_hungry
        async with f:
            while not job.eof:
                if not job.wants_data:
                    await hungry.wait()
                    hungry = trio.Event()
                    continue
                job.feed(await f.read(CHUNK))  # type: ignore[attr-defined]
                self.link.wake()

    async def wait_job_end(self, timeout: float = math.inf) -> JobResult | None:  # noqa: ASYNC109
        """Wait until the job has a result and the printer left the job states."""
        jobs = self.core.jobs
        await self.wait_until(lambda: jobs.result is not None and not jobs.active, timeout,
                              poll=0.05)
        return jobs.result

    def stop_for_exit(self) -> bool:
        """The host stops with a print running: the file stops at once, the cancel path runs
        with the heaters off and the journal kept (SerialLink.stop_for_exit). False when no
        print runs."""
        return self.link.stop_for_exit()

    async def orderly_disconnect(self) -> None:
        """Disconnecting on purpose: a running print stops first (`stop_for_exit`), then
        beforePrinterDisconnected runs and the queue drains (for DISCONNECT_DRAIN seconds at
        most), then the link closes. Not used when the link failed."""
        core = self.core
        if core.operational and not self.link.closed.is_set():
            self.stop_for_exit()
            core.fire(Event.DISCONNECTING)
            core.scripts.run("beforePrinterDisconnected")
            await self._drain()
        self.nursery.cancel_scope.cancel()

    async def _drain(self) -> None:
        """Wait until the queue is acknowledged: DISCONNECT_DRAIN seconds at most, and at most
        `serial.timeouts.silence` seconds without a byte from the printer (one that stopped
        answering would otherwise hold every stop, Ctrl-C's and systemd's, for the whole drain)."""
        core, link = self.core, self.link
        silence = core.config.serial.timeouts.silence
        with trio.move_on_after(DISCONNECT_DRAIN):
            while not (core.idle or core.failed or link.closed.is_set()):
                with trio.move_on_after(silence) as silent:
                    await link.wait_changed()
                if silent.cancelled_caught:
                    log.warning("the printer did not answer for %g s: disconnecting without "
                                "waiting for what is still queued", silence)
                    return


async def _probe(port: str, baudrate: int,
                 timeout: float) -> SerialTransport | None:  # noqa: ASYNC109 (per hello sent)
    """Open (port, baud) and see whether a firmware answers the hello."""
    try:
        transport = await open_port(port, baudrate)
    except LinkBroken:
        return None
    buf = b""
    for _ in range(3):
        try:
            await transport.send_all(b"\nN0 M110 N0*125\n")
            with trio.move_on_after(timeout):
                while True:
                    buf += await transport.receive_some()
                    lines = buf.split(b"\n")
                    if any(li.startswith(b"ok") or b"start" in li for li in lines):
                        return transport
        except LinkBroken:
            break
    await transport.aclose()
    return None


def factory_port(pipeline: Pipeline, config: HostConfig) -> str:
    """`comm.transport.serial.factory`: the first stage that answers picks the device.

    OctoPrint's factories return a pyserial-like object read with blocking calls; printpipe
    reads ports through trio without threads, so its factory stages return the device path
    to open (or None to pass).
    """
    p = config.printer
    for st, port in pipeline.call(Phase.SERIAL_FACTORY, p.port, p.baudrate,
                                  config.serial.timeouts.connection):
        if port is None:
            continue
        if not isinstance(port, str):
            raise LinkBroken(f"stage {st.id!r} (comm.transport.serial.factory) returned a "
                             f"{type(port).__name__}; printpipe's serial factories return a "
                             "device path or None", port=p.port)
        return port
    return p.port


async def autodetect(config: HostConfig, pipeline: Pipeline | None = None) -> SerialTransport:
    ports = candidate_ports() if config.printer.port == "auto" else [config.printer.port]
    if pipeline is not None and config.printer.port == "auto":
        for _, extra in pipeline.call(Phase.SERIAL_ADDITIONAL_PORT_NAMES, list(ports)):
            ports += [x for x in (extra or ()) if isinstance(x, str) and x not in ports]
    bauds = ((config.printer.baudrate,) if config.printer.baudrate
             else BAUD_CANDIDATES if len(ports) == 1 else (115200, 250000))
    for port in ports:
        for baud in bauds:
            transport = await _probe(port, baud, config.serial.timeouts.detection)
            if transport is not None:
                log.info("found a printer on %s at %d baud", port, baud)
                return transport
    raise LinkBroken("No more candidates to test, and no working port/baudrate combination "
                     f"detected (tried {', '.join(ports) or 'no ports'})", port="auto")


@asynccontextmanager
async def open_printer(config: HostConfig, pipeline: Pipeline, *,
                       connect_timeout: float | None = None,
                       listeners: Iterable[Listener] = (),
                       offsets: Mapping[str, float] = MappingProxyType({}),
                       serial_log: str | None = None,
                       ) -> AsyncIterator[Printer]:
    """Connect to the configured printer and yield a ready Printer (state Operational).
    `offsets` are the runtime temperature offsets, owned by the caller; with `serial_log`
    every line in and out is traced to that file (link/trace.py).

    Raises LinkBroken when the port cannot be opened or the printer does not answer.
    """
    try:
        async with _printer_nursery(config, pipeline, connect_timeout, listeners,
                                    offsets, serial_log) as printer:
            yield printer
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:  # trio wraps even a lone error: give callers the error itself
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@asynccontextmanager
async def _printer_nursery(config: HostConfig, pipeline: Pipeline, connect_timeout: float | None,
                           listeners: Iterable[Listener], offsets: Mapping[str, float],
                           serial_log: str | None) -> AsyncIterator[Printer]:
    async with trio.open_nursery() as nursery:
        core = HostCore(config, pipeline, clock=trio.lowlevel.current_clock().current_time,
                        scripts=load_scripts(config), offsets=offsets)
        core.listeners.extend(listeners)
        pipeline.comm = CommFacade(core)
        port, baudrate = config.printer.port, config.printer.baudrate
        for st, prevent in pipeline.call(Phase.PRINTER_HANDLE_CONNECT, port=port,
                                         baudrate=baudrate,
                                         profile=attrs.asdict(config.printer.profile)):
            if prevent is True:
                raise LinkBroken(f"stage {st.id!r} (printer.handle_connect) prevented the "
                                 "connect", port=port)
        virtual = None
        if port == "virtual":
            virtual = await nursery.start(serve_virtual_printer,
                                          FirmwareSpec.configured(config))
            transport = await open_port(virtual.port, baudrate or 115200)
        elif port == "auto" or baudrate == 0:
            transport = await autodetect(config, pipeline)
        else:
            transport = await open_port(factory_port(pipeline, config), baudrate,
                                        exclusive=config.serial.exclusive,
                                        hangup_on_close=config.serial.hangup_on_close)
        if serial_log is not None:
            trace = SerialTrace(serial_log, config.serial.log_size)
            trace.note(f"Connected to {transport.port}")
            transport = TracingTransport(transport, trace)
        link = SerialLink(core, transport)
        core.connect()
        await nursery.start(link.run)
        printer = Printer(core, link, virtual, nursery)
        t = config.serial.timeouts
        limit = connect_timeout or t.detection * 3 + t.connection
        await printer.wait_until(lambda: core.operational or core.failed, limit)
        if not core.operational:
            nursery.cancel_scope.cancel()
            raise LinkBroken(core.error or "the printer did not answer the hello",
                             port=transport.port)
        # The M115 answer and what it triggers (M155) belong to the connect; a stray ok from a
        # re-sent hello can make the queue look idle before they have happened.
        await printer.wait_until(lambda: core.failed or (core.engine.firmware_info_received
                                                         and core.idle), t.connection)
        try:
            yield printer
            await printer.orderly_disconnect()  # only when the caller's block ended normally
        finally:
            nursery.cancel_scope.cancel()
