"""The printer's SD card as the host knows it, and the one interface the control surface uses
for it (`SdCard`): whether the card is ready, its files, the selected file, SD prints
(select, print; pause, resume and cancel are job control's, as for local prints) and uploads.

Fed the printer's lines (`on_line`, from the session's reactions): `SD card ok` and the
removal messages, the M20 listing, `File opened` / `File selected`, `SD printing byte`,
`Done printing file`, `File deleted`. At connect (`on_capabilities`) it sends M21 when
`serial.sd.enabled`, and `M27 S<n>` when the firmware autoreports SD status; otherwise
`poll()` sends M27 (cmd_type `sd_status_poll`) while an SD print runs. Pure: no IO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pipeline.config.schema import SerialSpec
from pipeline.events.names import Event
from pipeline.session.filejob import JobFile
from pipeline.session.jobs import JobControl, JobStateError
from pipeline.session.queues import CommandSink, Publish
from pipeline.session.sd import replies as r
from pipeline.session.sd.job import SdJob
from pipeline.session.sd.replies import SdReply
from pipeline.session.sd.upload import Process, SdUpload
from pipeline.session.states import PrinterState

log = logging.getLogger("printpipe.sd")
S = PrinterState


class SdError(JobStateError):
    """An SD request the card's state does not allow (the HTTP API answers 409)."""


@attrs.frozen
class SdEntry:
    """One file on the card: `path` is the name the printer opens (8.3, lower case, as
    OctoPrint shows them), `display` its long name where the firmware lists one."""

    path: str
    size: int
    display: str

    def payload(self) -> dict[str, Any]:
        return {"name": self.path, "path": self.path, "origin": "sdcard"}


def _unwired(cmd: object, **_: object) -> list[Any]:
    raise SdError("the SD card is not wired to a session")


class SdCard:
    def __init__(self, *, serial: SerialSpec, sink: CommandSink, fire: Publish,
                 jobs: JobControl, clock: Callable[[], float]) -> None:
        self.spec = serial.sd
        self._sink = sink
        self._fire = fire
        self._jobs = jobs
        self._clock = clock
        self.ready = False
        self.files: list[SdEntry] = []
        self.selected: SdEntry | None = None
        self.upload: SdUpload | None = None
        #: The last upload's outcome: (local, remote, "" or the reason it failed).
        self.last_upload: tuple[str, str, str] | None = None
        self.finished_upload: SdUpload | None = None
        self.autoreport = False
        self.binary = False            # the firmware reports BINARY_FILE_TRANSFER
        self.abort = False             # ... and M524 (Marlin)
        self._long = False             # M20 L
        self._listing: list[SdEntry] | None = None
        self._opening: tuple[str, int] | None = None
        self._print_after: str | None = None  # select-and-print: the user, once selected
        #: An upload line's way to the card (the session's SdLane.process).
        self.process: Process = _unwired

    # ---- queries ---------------------------------------------------------------------------
    @property
    def printing(self) -> bool:
        """An SD print is the running job."""
        return isinstance(self._jobs.job, SdJob) and self._jobs.active

    @property
    def uploading(self) -> bool:
        return self.upload is not None

    def find(self, name: str) -> SdEntry | None:
        key = name.lstrip("/").lower()
        return next((f for f in self.files if key in (f.path, f.display.lower())), None)

    def state(self) -> dict[str, Any]:
        """What /api/printer/sd and the status page show."""
        up = self.upload
        return {"ready": self.ready, "files": [attrs.asdict(f) for f in self.files],
                "selected": self.selected.path if self.selected else None,
                "upload": None if up is None else {
                    "local": up.local, "remote": up.remote, "mode": up.mode,
                    "size": up.size, "done": up.done_bytes}}

    # ---- commands ----------------------------------------------------------------------------
    def _send(self, line: str, trigger: str, cmd_type: str | None = None) -> None:
        self._sink.enqueue(line, cmd_type=cmd_type, tags=frozenset({f"trigger:sd.{trigger}"}))

    def init(self) -> None:
        self._send("M21", "init")

    def release(self) -> None:
        self._refuse_busy("release the card")
        self._send("M22", "release")

    def refresh(self) -> None:
        if self.ready:
            self._send("M20 L" if self._long else "M20", "refresh", cmd_type="sd_list")

    def select(self, name: str, *, print_after: bool = False, user: str | None = None) -> None:
        """M23 the file; FileSelected follows the printer's `File selected` (and, with
        `print_after`, the print starts then)."""
        self._ready_or_refuse("select a file")
        self._refuse_busy("select another file")
        entry = self.find(name)
        self._print_after = (user or "") if print_after else None
        self._send(f"M23 {entry.path if entry else name.lstrip('/')}", "select")

    def start(self, user: str | None = None) -> SdJob:
        """Print the selected file from the card."""
        self._ready_or_refuse("print from it")
        if self.upload is not None:
            raise SdError("cannot print while a file is being uploaded to the SD card")
        if self.selected is None:
            raise SdError("no file on the SD card is selected")
        sel = self.selected
        job = SdJob(JobFile(sel.path, sel.path, sel.size, "sdcard", user), abort=self.abort)
        self._jobs.start(job)
        return job

    def delete(self, name: str) -> None:
        self._ready_or_refuse("delete a file")
        entry = self.find(name)
        if self.printing and entry is not None and entry == self.selected:
            raise SdError(f"cannot delete {entry.path}: it is being printed")
        self._send(f"M30 {entry.path if entry else name.lstrip('/')}", "delete")

    def start_upload(self, *, local: str, size: int, remote: str | None = None) -> SdUpload:
        """An upload of a stored file (`local`, its display name) to `remote` (its 8.3 name
        by default); the caller streams the bytes into it. TransferStarted fires now."""
        self._ready_or_refuse("upload to it")
        if self.upload is not None:
            raise SdError("another upload to the SD card is running")
        if self._jobs.active or self._jobs.state is not S.OPERATIONAL:
            raise SdError(f"cannot upload to the SD card while {self._jobs.state.value}")
        if remote is None:
            remote = r.dos_name(local, {f.path for f in self.files})
        binary = self.binary and self.spec.binary_transfer
        self.upload = SdUpload(local=local, remote=remote, size=size, binary=binary,
                               spec=self.spec, process=self.process, started=self._clock())
        if self.selected is not None and self.selected.path == remote.lower():
            self._deselect()
        self._fire(Event.TRANSFER_STARTED, {"local": local, "remote": remote})
        return self.upload

    def upload_over(self) -> None:
        """The session saw the upload end: TransferDone or TransferFailed, list refreshed."""
        up = self.upload
        if up is None:
            return
        self.upload = None
        self.finished_upload = up
        t = self._clock() - up.started
        payload = {"local": up.local, "remote": up.remote, "time": t}
        self.last_upload = (up.local, up.remote, up.result or "")
        if up.result:
            log.warning("upload of %s to the SD card failed: %s", up.local, up.result)
            self._fire(Event.TRANSFER_FAILED, {**payload, "reason": up.result})
        else:
            self._fire(Event.TRANSFER_DONE, payload)
        if self.ready:
            self.refresh()

    def disconnected(self, why: str) -> None:
        """The link closed: the card is unknown until the next connect."""
        up = self.upload
        if up is not None and up.result is None:
            up.result = f"the link closed during the upload ({why})"
            self.upload_over()
        self.upload = None
        self.ready = False
        self.files, self.selected, self._listing = [], None, None

    def _ready_or_refuse(self, what: str) -> None:
        if not self.spec.enabled:
            raise SdError(f"cannot {what}: SD support is off (serial.sd.enabled)")
        if not self.ready:
            raise SdError(f"cannot {what}: the printer's SD card is not ready")

    def _refuse_busy(self, what: str) -> None:
        if self.printing:
            raise SdError(f"cannot {what} while printing from the SD card")

    # ---- from the printer ----------------------------------------------------------------------
    def on_capabilities(self, caps: Mapping[str, bool]) -> None:
        """The firmware's capability report arrived (at connect, after a reset)."""
        if not self.spec.enabled:
            return
        self.autoreport = bool(caps.get("AUTOREPORT_SD_STATUS"))
        self.binary = bool(caps.get("BINARY_FILE_TRANSFER"))
        self._long = bool(caps.get("EXTENDED_M20"))
        self.ready = False  # (after a reset too: the card is mounted again)
        self.init()
        n = self.spec.autoreport_interval
        if self.autoreport and n > 0:
            self._send(f"M27 S{n}", "autoreport")
        else:
            self.autoreport = False

    def on_firmware(self, name: str | None) -> None:
        self.abort = bool(name) and "marlin" in (name or "").lower()

    def poll_interval(self) -> float:
        return self.spec.status_interval

    def poll(self) -> None:
        """M27 while an SD print runs and the printer does not autoreport."""
        if self.printing and not self.autoreport and self._jobs.state is S.PRINTING:
            self._send("M27", "poll", cmd_type="sd_status_poll")

    def on_line(self, line: str) -> None:
        if self._listing is not None and not line.startswith(("End file list", "echo:")):
            entry = r.list_entry(line)
            if entry is not None:
                self._listing.append(SdEntry(entry[0].lower(), entry[1], entry[2]))
            return
        found = r.read_sd_line(line)
        if found is None:
            return
        kind, text = found
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, text)
        elif kind is SdReply.BINARY and self.upload is not None:
            self.upload.switched = True

    def _card_ok(self, text: str) -> None:
        was = self.ready
        self.ready = True
        if not was:
            self.refresh()

    def _card_gone(self, text: str) -> None:
        if self.ready:
            self.ready = False
            self.files, self.selected = [], None
            self._fire(Event.UPDATED_FILES, {"type": "printables"})

    def _list_begin(self, text: str) -> None:
        self._listing = []

    def _list_end(self, text: str) -> None:
        if self._listing is None:
            return
        self.files, self._listing = self._listing, None
        self._fire(Event.UPDATED_FILES, {"type": "printables"})

    def _opened(self, text: str) -> None:
        self._opening = r.opened(text)

    def _selected(self, text: str) -> None:
        if self._opening is None:
            return
        name, size = self._opening
        self._opening = None
        known = self.find(name)
        self.selected = SdEntry(name.lower(), size, known.display if known else name)
        self._fire(Event.FILE_SELECTED, self.selected.payload())
        user, self._print_after = self._print_after, None
        if user is not None:
            try:
                self.start(user or None)
            except JobStateError as exc:
                log.warning("could not print %s from the SD card: %s", name, exc)

    def _open_failed(self, text: str) -> None:
        self._print_after = None
        if self.upload is None:
            log.warning("the printer could not open a file on its SD card: %s", text)

    def _printing_byte(self, text: str) -> None:
        found = r.printing_byte(text)
        job = self._jobs.job
        if found is not None and isinstance(job, SdJob) and self._jobs.result is None:
            job.at_byte(*found)

    def _done_printing(self, text: str) -> None:
        job = self._jobs.job
        if isinstance(job, SdJob) and self._jobs.active:
            job.pos = job.file.size
            self._sink.add_marker(self._jobs.printer_done)

    def _deleted(self, text: str) -> None:
        name = text.partition(":")[2].strip().lower()
        if self.selected is not None and self.selected.path == name:
            self._deselect()
        self.refresh()

    def _deselect(self) -> None:
        self.selected = None
        self._fire(Event.FILE_DESELECTED, {})


_HANDLERS: dict[SdReply, Callable[[SdCard, str], None]] = {
    SdReply.CARD_OK: SdCard._card_ok, SdReply.CARD_GONE: SdCard._card_gone,
    SdReply.CARD_INSERTED: lambda card, text: card.init(),
    SdReply.LIST_BEGIN: SdCard._list_begin, SdReply.LIST_END: SdCard._list_end,
    SdReply.OPENED: SdCard._opened, SdReply.SELECTED: SdCard._selected,
    SdReply.OPEN_FAILED: SdCard._open_failed, SdReply.PRINTING_BYTE: SdCard._printing_byte,
    SdReply.DONE_PRINTING: SdCard._done_printing, SdReply.DELETED: SdCard._deleted,
}
