"""One printer's SD card as the edges drive it (`PrinterControl.sd`): whether it is ready,
its files, mount / list / release, select (and print), start, delete, and uploads of stored
files. Thin: the card's state and rules are the session's (pipeline/session/sd/); this only
finds the open session and says so when there is none. A request the card's or the printer's
state does not allow raises JobStateError (SdError is one; the HTTP API answers 409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.link.printer import Printer
from pipeline.session.jobs import JobStateError
from pipeline.session.sd.card import SdCard, SdEntry


class SdControl:
    def __init__(self, printer: Callable[[], Printer | None], *, enabled: Callable[[], bool],
                 local_selected: Callable[[], None]) -> None:
        """`printer`: the open session's (None when closed); `enabled`: serial.sd.enabled;
        `local_selected`: forgets the local file selection (an SD file replaces it)."""
        self._printer = printer
        self._enabled = enabled
        self._forget_local = local_selected

    @property
    def enabled(self) -> bool:
        """SD support is on in the config (OctoPrint's `feature.sdSupport`)."""
        return self._enabled()

    def _card(self) -> SdCard | None:
        p = self._printer()
        return p.core.sd if p is not None else None

    def _operational(self) -> Printer:
        p = self._printer()
        if p is None or not p.core.operational:
            raise JobStateError("the printer is not operational")
        return p

    @property
    def ready(self) -> bool:
        card = self._card()
        return card is not None and card.ready

    @property
    def files(self) -> list[SdEntry]:
        card = self._card()
        return list(card.files) if card is not None and card.ready else []

    @property
    def selected(self) -> SdEntry | None:
        card = self._card()
        return card.selected if card is not None else None

    def find(self, name: str) -> SdEntry | None:
        card = self._card()
        return card.find(name) if card is not None and card.ready else None

    def state(self) -> dict[str, Any]:
        """The card as /api/printer/sd and the CLI show it (not ready while disconnected)."""
        card = self._card()
        if card is None:
            return {"ready": False, "files": [], "selected": None, "upload": None}
        return card.state()

    def init(self) -> None:
        self._operational().core.sd.init()

    def refresh(self) -> None:
        card = self._operational().core.sd
        if not card.ready:
            raise JobStateError("cannot list the SD card: it is not ready")
        card.refresh()

    def release(self) -> None:
        card = self._operational().core.sd
        if not card.ready:
            raise JobStateError("cannot release the SD card: it is not ready")
        card.release()

    def select(self, name: str, *, print_after: bool = False, user: str | None = None) -> None:
        """Select `name` on the card (the printer confirms it; FileSelected follows), and
        print it once selected with `print_after`. The local selection is forgotten."""
        card = self._operational().core.sd
        if card.find(name) is None and card.ready:
            raise LookupError(f"no file {name!r} on the SD card")
        card.select(name, print_after=print_after, user=user)
        self._forget_local()

    def start(self, user: str | None = None) -> None:
        """Print the selected file from the card."""
        p = self._operational()
        if p.core.jobs.active:
            raise JobStateError("a print is already running")
        p.core.sd.start(user)

    def delete(self, name: str) -> None:
        card = self._operational().core.sd
        if card.find(name) is None and card.ready:
            raise LookupError(f"no file {name!r} on the SD card")
        card.delete(name)

    async def upload(self, disk: str, *, name: str | None = None,
                     remote: str | None = None) -> str:
        """Start uploading the stored file at `disk` (shown as `name`) to the card; returns
        its name on the card. The upload runs on; `uploading` / `last_upload` tell its end."""
        up = await self._operational().upload_to_sd(disk, name=name, remote=remote)
        return up if isinstance(up, str) else up.remote

    @property
    def uploading(self) -> bool:
        card = self._card()
        return card is not None and card.uploading

    @property
    def last_upload(self) -> tuple[str, str, str] | None:
        """The last upload's (local, remote, "" or why it failed), this session."""
        card = self._card()
        return card.last_upload if card is not None else None

    async def wait_until(self, predicate: Callable[[], bool],
                         timeout: float) -> bool:  # noqa: ASYNC109 (answers whether it held)
        """Wait until `predicate()` holds (checked as the printer's lines arrive, and at least
        every 0.05 s); False when time ran out or no session is open."""
        p = self._printer()
        return p is not None and await p.wait_until(predicate, timeout, poll=0.05)

    async def wait_upload(self, timeout: float) -> tuple[str, str, str] | None:  # noqa: ASYNC109
        p = self._printer()
        return None if p is None else await p.wait_upload(timeout)
