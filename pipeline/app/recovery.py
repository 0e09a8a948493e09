"""The crash journal at the edges: the interrupted print found when the service starts (logged,
published as PrintInterrupted, shown by GET /api/job), the checks before it is resumed (the
file must be the one that was printing), and the writer task of each printer session.
`Control` (app/control.py) drives it; the edges reach it only through Control.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import trio

from pipeline.events.names import Event
from pipeline.files.journal import JournalFile, JournalUnreadable, apply, serve_journal
from pipeline.link.printer import Printer
from pipeline.session.jobs import JobStateError
from pipeline.session.recovery import FileIdentity, Journal, JournalError, PrintJournal

log = logging.getLogger("printpipe.journal")


def _when(wall: float) -> str:
    local = datetime.datetime.fromtimestamp(wall, tz=datetime.UTC).astimezone()
    return local.isoformat(sep=" ", timespec="seconds")


class Recovery:
    def __init__(self, folder: str, publish: Callable[[Event, dict[str, Any]], None]) -> None:
        self.file = JournalFile(folder)
        #: The print a crash interrupted, read at start; None once resumed or discarded.
        self.interrupted: Journal | None = None
        self._publish = publish

    def load(self) -> Journal | None:
        """Read the journal an interrupted print left; log it and publish PrintInterrupted.
        One that cannot be read is reported in one line and set aside."""
        try:
            data = self.file.read()
            if data is None:
                return None
            journal = Journal.from_json(data)
        except (JournalUnreadable, JournalError) as exc:
            try:
                aside = f"set aside as {self.file.set_aside()}"
            except OSError as err:
                aside = f"could not set it aside: {err.strerror or err}"
            log.error("%s; %s; nothing can be recovered from it", exc, aside)
            return None
        self.interrupted = journal
        problem = self.problem(journal)
        log.warning("a print was interrupted: %s (journal of %s). %s", journal.summary(),
                    _when(journal.time), problem or "`printpipe recover` or POST /api/job "
                    '{"command": "recover"} resumes it')
        self._publish(Event.PRINT_INTERRUPTED, journal.payload())
        return journal

    @staticmethod
    def problem(journal: Journal) -> str | None:
        """Why `journal` cannot be resumed, or None: nothing printed in Z yet, or its file
        is gone or changed (size or modification time) since."""
        problem = journal.problem()
        if problem is not None:
            return problem
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

    def take(self) -> Journal:
        """The journal to resume; JobStateError with the reason when there is none to."""
        journal = self.interrupted
        if journal is None:
            raise JobStateError(f"there is no interrupted print to recover (no journal in "
                                f"{self.file.folder})")
        problem = self.problem(journal)
        if problem is not None:
            raise JobStateError(problem)
        return journal

    async def resume(self, printer: Printer, user: str | None) -> FileIdentity:
        """Start the interrupted print on `printer`: beforePrintRecovered, then the file
        from its first line not acknowledged. Returns the file."""
        journal = self.take()
        f = journal.file
        await printer.start_print(f.disk, name=f.name, display_path=f.path, user=user,
                                  resume=journal)
        self.interrupted = None
        return f

    def discard(self, why: str) -> None:
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
        """The writer task of one printer session."""
        await serve_journal(journal.poll, self.file)

    async def flush(self, journal: PrintJournal) -> None:
        """The session ended: what is still due (a print that failed keeps its journal with
        the last acknowledged line; one that ended is cleared)."""
        with trio.CancelScope(shield=True):
            action = journal.poll(trio.current_time(), time.time())
            if action is not None:
                try:
                    await trio.to_thread.run_sync(apply, self.file, action)
                except OSError as exc:
                    log.error("cannot write the print journal %s: %s", self.file.path, exc)
