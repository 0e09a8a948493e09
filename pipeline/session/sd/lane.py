"""The SD card's turn on the link, as the session core delegates it: the running upload's
commands in the session's command path (`next_command`), every upload line's processing
(`process`: the `comm.protocol.gcode.*` phases and `comm.protocol.gcode.sending.sd`, the wire
guard), and, while the binary transfer owns the link, its bytes both ways, its deadline and
its timeouts. Also the `printer.sdcardupload` phase (`hooked_upload`): a stage that returns
a remote name takes the upload over and reports through the seed's three callbacks.

Narrow dependencies (the card, the pipeline, the guard's reading, the engine's in-flight
count); never the session core. Pure: no IO, no clock reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.events.names import Event
from pipeline.gcode import Command
from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase
from pipeline.session.sd.card import SdCard
from pipeline.session.sd.upload import Stage
from pipeline.wire import Refused

log = logging.getLogger("printpipe.sd")
INF = float("inf")


class InFlight(Protocol):
    """What the lane reads and sets on the engine: an upload numbers and checksums every
    line as a print does (`printing`)."""

    printing: bool

    @property
    def in_flight(self) -> int: ...


class SdLane:
    def __init__(self, card: SdCard, *, pipeline: Pipeline, engine: InFlight,
                 canonical: Callable[[str, str | None], str], emergency: frozenset[str],
                 queues_empty: Callable[[], bool], fire: Callable[..., None]) -> None:
        self.card = card
        self._pipeline = pipeline
        self._engine = engine
        self._canonical = canonical
        self._emergency = emergency
        self._queues_empty = queues_empty
        self._fire = fire

    # ---- commands ------------------------------------------------------------------------------
    def next_command(self) -> tuple[bool, Command | None]:
        """(the upload owns the command path now, its next command)."""
        up = self.card.upload
        if up is None or (up.stage is Stage.WAITING and not self._queues_empty()):
            return False, None
        cmd = up.next_command(self._queues_empty(), self._engine.in_flight)
        if up.stage is Stage.DONE:
            self._engine.printing = False
            self.card.upload_over()
            return cmd is not None, cmd
        self._engine.printing = True  # line numbers and checksums on every line
        return True, cmd

    def probe(self) -> Command | None:
        """The engine's probe during a text upload: the upload's next line (an M105 would be
        written to the file), or None."""
        up = self.card.upload
        if up is None or up.stage is not Stage.TEXT:
            return None
        return up.next_command(self._queues_empty(), self._engine.in_flight)

    def process(self, cmd: Command, *, binary: bool = False) -> list[Command]:
        """One upload line through the phases and the guard: what the card stores (Refused
        when it must not reach the printer). Text mode's `sending` and `sent` phases run
        on the wire; binary mode's run here."""
        p = self._pipeline
        cmds = p.run(Phase.GCODE_QUEUING, cmd) if p.queuing else [cmd]
        out = []
        for c in cmds:
            c = self._checked(c)
            if p.queued:
                p.notify(Phase.GCODE_QUEUED, c)
            if binary and p.sending:
                sent = p.run(Phase.GCODE_SENDING, c)
                if not sent:
                    continue
                c = self._checked(sent[0])
            sd_stages = p.for_phase(Phase.GCODE_SENDING_SD)
            if sd_stages:
                stored = p.run_command_phase(Phase.GCODE_SENDING_SD, sd_stages, c)
                if not stored:
                    continue
                c = self._checked(stored[0])
            if binary and p.sent:
                p.notify(Phase.GCODE_SENT, c)
            out.append(c)
        return out

    def _checked(self, c: Command) -> Command:
        line = self._canonical(c.line, c.gcode)
        if c.gcode in self._emergency:
            raise Refused(f"{c.gcode} would act at once on the printer (its emergency "
                          "parser reads every line), not be stored on the card")
        return c if line is c.line else Command.parse(line, tags=c.tags)

    # ---- the binary transfer -------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        up = self.card.upload
        return up is not None and up.stage is Stage.BINARY

    @property
    def deadline(self) -> float:
        up = self.card.upload
        return up.transfer.deadline if up is not None and up.transfer is not None else INF

    def data_to_send(self, now: float) -> bytes:
        up = self.card.upload
        assert up is not None and up.transfer is not None
        up.binary_feed()
        out = up.transfer.data_to_send(now)
        self._over_if_finished()
        return out

    def receive_data(self, data: bytes, now: float) -> bytes:
        """The printer's bytes; returns those after the transfer ended (text again)."""
        up = self.card.upload
        assert up is not None and up.transfer is not None
        rest = up.transfer.receive_data(data, now)
        self._over_if_finished()
        return rest

    def handle_timeout(self, now: float) -> None:
        up = self.card.upload
        assert up is not None and up.transfer is not None
        up.transfer.handle_timeout(now)
        self._over_if_finished()

    def _over_if_finished(self) -> None:
        up = self.card.upload
        if up is not None and up.transfer is not None and up.transfer.finished:
            self._engine.printing = False
            up.binary_over()
            self.card.upload_over()

    # ---- printer.sdcardupload --------------------------------------------------------------
    def hooked_upload(self, local: str, path: str) -> str | None:
        """Offer the upload to the `printer.sdcardupload` stages; the remote name of the
        first that takes it, or None (the built-in upload runs)."""
        stages = self._pipeline.for_phase(Phase.PRINTER_SDCARDUPLOAD)
        if not stages:
            return None
        fire = self._fire

        def started(local_name: str, remote_name: str, *_: Any) -> None:
            fire(Event.TRANSFER_STARTED, {"local": local_name, "remote": remote_name})

        def succeeded(local_name: str, remote_name: str, elapsed: float, *_: Any) -> None:
            fire(Event.TRANSFER_DONE, {"local": local_name, "remote": remote_name,
                                       "time": elapsed})
            self.card.refresh()

        def failed(local_name: str, remote_name: str, elapsed: float, *_: Any) -> None:
            fire(Event.TRANSFER_FAILED, {"local": local_name, "remote": remote_name,
                                         "time": elapsed, "reason": "failed"})

        for st, remote in self._pipeline.call(Phase.PRINTER_SDCARDUPLOAD, local, path,
                                              started, succeeded, failed):
            if remote:
                log.info("stage %r takes the upload of %s to the SD card over (as %s)",
                         st.id, local, remote)
                return str(remote)
        return None
