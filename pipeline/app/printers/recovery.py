"""The crash journal at the edges: the interrupted print found when the service starts, or
the moment a print ends keeping its journal (the printer reset, the port gone, a link
failure): logged, published as PrintInterrupted, shown by GET /api/job; the checks before it
is resumed, and the writer task of each printer session. `PrinterControl` (control.py) drives
it; the edges reach it only through PrinterControl.

A journal is trusted only once files/journalcheck.py passed it (fields, ranges for the
profile, the file inside the storage folder, the offset at a line start): one that fails is
reported in one line and set aside, at start and again before it is resumed. One whose file
is gone or changed since stays, shown with that problem, and cannot be resumed.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from pipeline.config.schema import ProfileSpec
from pipeline.events.names import Event
from pipeline.files.journal import (
    Action,
    JournalFile,
    JournalUnreadable,
    apply,
    serve_journal,
)
from pipeline.files.journalcheck import (
    JournalElsewhere,
    JournalRefused,
    check_offset,
    check_record,
    place,
)
from pipeline.link.printer import Printer
from pipeline.session.jobs import JobStateError
from pipeline.session.recovery import FileIdentity, Journal, JournalError, PrintJournal

log = logging.getLogger("printpipe.journal")


def _when(wall: float) -> str:
    local = datetime.datetime.fromtimestamp(wall, tz=datetime.UTC).astimezone()
    return local.isoformat(sep=" ", timespec="seconds")


#: (the storage folder, the printer's profile): what a journal is checked against.
Bounds = Callable[[], tuple[str, ProfileSpec]]


class Recovery:
    def __init__(self, folder: str, publish: Callable[[Event, dict[str, Any]], None],
                 bounds: Bounds) -> None:
        self.file = JournalFile(folder)
        #: The print a crash interrupted, read at start; None once resumed or discarded.
        self.interrupted: Journal | None = None
        #: A file outside the storage folder the user named (`printpipe recover FILE`).
        self.named: str | None = None
        #: Whether a print that ends keeping its journal is offered at once; False once the
        #: service is going down (its journal waits for the next start).
        self.live = True
        self._publish = publish
        self._bounds = bounds
        self._kept = False  # a session kept an ended print's journal: offer it (once)
        self._prints = 0    # prints started (or resumed) so far: a load they overtake is void

    async def load(self, *, live: bool = False) -> Journal | None:
        """Read the journal an interrupted print left (at start; `live`: the print just
        ended); log it and publish PrintInterrupted. One that cannot be read or trusted is
        reported in one line and set aside."""
        prints = self._prints
        try:
            data = self.file.read()
            if data is None:
                return None
            storage, profile = self._bounds()
            try:
                check_record(data, profile)
            except JournalRefused as exc:
                raise type(exc)(f"{self.file.path}: {exc}") from None
            journal = await self._checked(Journal.from_json(data), storage)
        except JournalElsewhere as exc:
            log.log(logging.WARNING if live else logging.ERROR,
                    "%s; not offered (kept for that command)", exc)
            return None
        except (JournalUnreadable, JournalError, JournalRefused) as exc:
            self._set_aside(str(exc))
            return None
        if prints != self._prints:  # a print started while the journal was checked
            return None
        self.interrupted = journal
        problem = self.problem(journal)
        log.warning("a print was interrupted: %s (journal of %s). %s", journal.summary(),
                    _when(journal.time), problem or "`printpipe recover` or POST /api/job "
                    '{"command": "recover"} resumes it')
        self._publish(Event.PRINT_INTERRUPTED, journal.payload())
        return journal

    async def _checked(self, journal: Journal, storage: str) -> Journal:
        """`journal` with its file's real path, once that lies inside `storage` (or is the
        named file) and, unless the file changed since, the offset starts its line."""
        def check() -> Journal:
            f = journal.file
            try:
                real = place(f.disk, storage, self.named)
                placed = attrs.evolve(journal, file=attrs.evolve(f, disk=real))
                if self.changed(placed) is None:
                    check_offset(real, journal.filepos, journal.line, f.path)
            except JournalRefused as exc:
                raise type(exc)(f"{self.file.path}: {exc}") from None
            except OSError as exc:
                raise JournalRefused(f"{self.file.path}: file.disk {f.disk!r} cannot be "
                                     f"read: {exc.strerror or exc}") from None
            return placed

        return await trio.to_thread.run_sync(check)

    def _set_aside(self, why: str) -> None:
        try:
            aside = f"set aside as {self.file.set_aside()}"
        except OSError as err:
            aside = f"could not set it aside: {err.strerror or err}"
        log.error("%s; %s; nothing can be recovered from it", why, aside)

    @staticmethod
    def problem(journal: Journal) -> str | None:
        """Why `journal` cannot be resumed, or None: nothing printed in Z yet, or its file
        is gone or changed (size or modification time) since."""
        return journal.problem() or Recovery.changed(journal)

    @staticmethod
    def changed(journal: Journal) -> str | None:
        """Why the journal's file is not the one that was printing, or None."""
        f = journal.file
        try:
            st = os.stat(f.disk)
        except OSError as exc:
            return f"cannot recover the print of {f.path}: {f.disk}: {exc.strerror or exc}"
        if st.st_size != f.size:
            return (f"cannot recover the print of {f.path}: the file changed since "
                    f"(it had {f.size} bytes, now {st.st_size})")
        if st.st_mtime_ns != f.mtime_ns:
            return (f"cannot recover the print of {f.path}: the file was modified since "
                    f"(at {_when(st.st_mtime_ns / 1e9)})")
        return None

    async def take(self) -> Journal:
        """The journal to resume, checked again; JobStateError with the reason when there
        is none to (one that fails the checks now is set aside)."""
        journal = self.interrupted
        if journal is None:
            raise JobStateError(f"there is no interrupted print to recover (no journal in "
                                f"{self.file.folder})")
        try:
            journal = await self._checked(journal, self._bounds()[0])
        except JournalRefused as exc:
            self.interrupted = None
            self._set_aside(str(exc))
            raise JobStateError(str(exc)) from None
        problem = self.problem(journal)
        if problem is not None:
            raise JobStateError(problem)
        return journal

    async def resume(self, printer: Printer, user: str | None) -> FileIdentity:
        """Start the interrupted print on `printer`: beforePrintRecovered, then the file
        from its first line not acknowledged. Returns the file."""
        journal = await self.take()
        f = journal.file
        await printer.start_print(f.disk, name=f.name, display_path=f.path, user=user,
                                  resume=journal)
        self.interrupted = None
        self._prints += 1
        return f

    def discard(self, why: str) -> None:
        """Another print started: the interrupted one is forgotten (its journal is replaced)."""
        self._prints += 1
        journal = self.interrupted
        if journal is not None:
            log.warning("the journal of the interrupted print of %s is discarded: %s",
                        journal.file.path, why)
            self.interrupted = None

    def status(self) -> dict[str, Any] | None:
        """What GET /api/job shows as `recovery`: the interrupted print, None without one."""
        journal = self.interrupted
        if journal is None:
            return None
        f = journal.file
        return {"file": {"name": f.name, "path": f.path, "origin": f.origin, "size": f.size},
                "line": journal.line, "filepos": journal.filepos, "z": journal.state["z"],
                "time": journal.time, "problem": self.problem(journal)}

    async def follow(self, journal: PrintJournal) -> None:
        """The writer task of one printer session: a print that ends keeping its journal
        (the printer reset, a link failure) is offered as soon as it is written."""
        async def written(action: Action) -> None:
            await self._offer(journal, action)
        await serve_journal(journal.poll, self.file, after=written)

    async def flush(self, journal: PrintJournal) -> None:
        """The session ended: what is still due (a print that failed keeps its journal with
        the last acknowledged line, offered at once; one that ended is cleared)."""
        with trio.CancelScope(shield=True):
            action = journal.poll(trio.current_time(), time.time())
            if action is not None:
                try:
                    await trio.to_thread.run_sync(apply, self.file, action)
                except OSError as exc:
                    log.error("cannot write the print journal %s: %s", self.file.path, exc)
                    action = None
            await self._offer(journal, action)

    async def _offer(self, journal: PrintJournal, action: Action) -> None:
        """After `action` was carried out: when it kept the journal of a print that just
        ended, load it as at start (checked, logged, PrintInterrupted, GET /api/job)."""
        if action is not None and action[0] == "write" and not journal.active:
            self._kept = True
        if self._kept and self.live:
            self._kept = False
            with trio.CancelScope(shield=True):  # short: one small file read and its checks
                await self.load(live=True)
