"""Marlin's SD card commands for the virtual firmware (a mixin of `VirtualFirmware`), and the
SD print the firmware runs itself.

M20 (list; `L` long names, `T` times), M21/M22 (mount, release), M23 (select), M24 (start or
resume), M25 (pause), M26 S (position), M27 (status; `S<n>` autoreport, `C` current file),
M28/M29 (write a file; `M28 B1` switches to the binary file transfer), M30 (delete) and M524
(abort), with Marlin's replies. While a file is being written every command goes to it
(M29 ends it). An SD print reads the selected file line by line: the plain model runs a
line at a time, a move every `virtual.sd.line_time` s; the Marlin model puts the lines in
its command queue beside the host's (one slot kept free for them), so the planner, waits
and heaters behave as for host lines and the host's commands keep working.
Pure: no IO, no trio, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from pipeline.gcode import param_value
from pipeline.virtual.faults import FaultKind
from pipeline.virtual.sd.binary import BinaryReceiver
from pipeline.virtual.sd.card import SdCard

if TYPE_CHECKING:
    from pipeline.virtual.faults import FaultDice
    from pipeline.virtual.spec import FirmwareSpec
    from pipeline.virtual.waits import Wait

Handler = Callable[["SdMixin", str, float], "str | None"]
_MOVES = frozenset({"G0", "G1", "G2", "G3"})


class SdMixin:
    spec: FirmwareSpec
    _out: list[str]
    _wait: Wait | None
    _dice: FaultDice
    killed: bool

    def _dispatch(self, text: str, now: float) -> str | None:
        raise NotImplementedError  # provided by CommandsMixin

    def _sd_init(self) -> None:
        s = self.spec.virtual.sd
        self.card = SdCard(long_names=s.long_names)
        self.sd_enabled = s.enabled
        self.sd_executed = 0                 # SD lines the firmware ran
        self.bft: BinaryReceiver | None = None
        self._sd_line = False                # the command running came from the card
        self._sd_queue_mode = False          # the Marlin model queues SD lines itself
        self._sd_step_at: float | None = None
        self._sd_resume = False
        self._sd_report_every = 0.0
        self._sd_report_at: float | None = None
        self._sd_at: float | None = None     # the earliest of the two above

    def sd_capabilities(self) -> dict[str, bool]:
        s = self.spec.virtual.sd
        if not s.enabled:
            return {}
        return {"SDCARD": True, "AUTOREPORT_SD_STATUS": True, "LONG_FILENAME": s.long_names,
                "EXTENDED_M20": s.long_names, "BINARY_FILE_TRANSFER": s.binary_transfer}

    # ------------------------------------------------------------ time

    def _sd_plan(self) -> None:
        a, b = self._sd_step_at, self._sd_report_at
        self._sd_at = a if b is None else b if a is None else min(a, b)

    def _sd_due(self, t: float) -> None:
        """Fire the SD events due at `t` (a print step, an autoreport)."""
        card = self.card
        if self._sd_report_at is not None and self._sd_report_at <= t:
            if card.selected is not None:
                self._out.append(card.status())
            self._sd_report_at = t + self._sd_report_every
        if self._sd_step_at is not None and self._sd_step_at <= t:
            self._sd_step_at = None
            self._sd_run(t)
        self._sd_plan()

    def _sd_run(self, t: float) -> None:
        """The plain model: run the card's lines until a move (or a wait, or the end)."""
        card = self.card
        while card.printing and not self.killed:
            if self._wait is not None:
                self._sd_resume = True
                return
            text = card.next_line()
            if text is None:
                self._sd_finished()
                return
            if not text:
                continue
            self._sd_exec(text, t)
            if text.split(None, 1)[0] in _MOVES:
                break
        if card.printing and self._wait is None:
            self._sd_step_at = t + self.spec.virtual.sd.line_time
        elif card.printing:
            self._sd_resume = True

    def _sd_exec(self, text: str, t: float) -> None:
        self._sd_line = True
        try:
            self._dispatch(text, t)
        finally:
            self._sd_line = False
        self.sd_executed += 1

    def _sd_waited(self, t: float) -> None:
        """A wait ended (the plain model): an SD print waiting for it goes on."""
        if self._sd_resume:
            self._sd_resume = False
            if self.card.printing:
                self._sd_step_at = t
                self._sd_plan()

    def _sd_finished(self) -> None:
        card = self.card
        card.printing = False
        card.selected, card.pos = None, 0
        self._out.append("Done printing file")

    def _sd_start(self, now: float) -> None:
        if not self._sd_queue_mode:
            self._sd_step_at = now
            self._sd_plan()

    def _sd_aborted(self) -> None:
        """M524: the Marlin model drops the card's lines from its queue."""

    # ------------------------------------------------------------ writing

    def _sd_save(self, text: str) -> str:
        card = self.card
        if text.split(None, 1)[0] == "M29":
            card.saving = None
            self._out.append("Done saving file.")
            return "ok"
        assert card.saving is not None
        card.saving.data += text.encode("latin-1", "replace") + b"\r\n"
        return "ok"

    def feed_binary(self, data: bytes) -> bytes:
        """Bytes for the binary transfer; returns those after it ended (text again)."""
        assert self.bft is not None
        out, rest = self.bft.feed(data)
        self._out.extend(out)
        if not self.bft.active:
            self.bft = None
        return rest

    # ------------------------------------------------------------ handlers

    def _sd_off(self) -> str | None:
        if not self.sd_enabled:
            return "ok"
        if not self.card.mounted:
            self._out.append("echo:No SD card")
            return "ok"
        return None

    def _m20(self, text: str, now: float) -> str:
        if (off := self._sd_off()) is not None:
            return off
        args = text[3:].upper().split()
        self._out.append("Begin file list")
        self._out.extend(self.card.listing(long="L" in args, times="T" in args))
        self._out.append("End file list")
        return "ok"

    def _m21(self, text: str, now: float) -> str:
        if self.sd_enabled and self.card.inserted:
            self.card.mounted = True
            self._out.append("echo:SD card ok")
        else:
            self._out.append("echo:SD init fail")
        return "ok"

    def _m22(self, text: str, now: float) -> str:
        card = self.card
        card.mounted = card.printing = False
        card.selected, card.saving = None, None
        self._out.append("echo:SD card released")
        return "ok"

    def _m23(self, text: str, now: float) -> str:
        if (off := self._sd_off()) is not None:
            return off
        name = text[3:].strip()
        card = self.card
        f = card.find(name)
        if f is None:
            self._out.append(f"echo:open failed, File: {name}.")
            return "ok"
        card.selected, card.pos, card.printing = f, 0, False
        self._out.append(f"File opened: {f.short} Size: {len(f.data)}")
        self._out.append("File selected")
        return "ok"

    def _m24(self, text: str, now: float) -> str:
        card = self.card
        if card.selected is not None and not card.printing:
            card.printing = True
            self._sd_start(now)
        return "ok"

    def _m25(self, text: str, now: float) -> str:
        self.card.printing = False
        self._sd_step_at = None
        self._sd_plan()
        return "ok"

    def _m26(self, text: str, now: float) -> str:
        s = param_value(text, "S")
        card = self.card
        if card.selected is not None and s is not None:
            card.pos = min(max(int(s), 0), len(card.selected.data))
        return "ok"

    def _m27(self, text: str, now: float) -> str:
        card = self.card
        if "C" in text[3:].upper():
            f = card.selected
            self._out.append(f"Current file: {f.short} {f.long}" if f
                             else "Current file: (no file)")
            return "ok"
        s = param_value(text, "S")
        if s is not None:
            self._sd_report_every = max(s, 0.0)
            self._sd_report_at = now + s if s > 0 else None
            self._sd_plan()
            return "ok"
        self._out.append(card.status())
        return "ok"

    def _m28(self, text: str, now: float) -> str:
        if (off := self._sd_off()) is not None:
            return off
        arg = text[3:].strip()
        if arg[:1] == "B" and arg[1:2].isdigit():
            binary, arg = arg[1] != "0", arg[2:].strip()
            if binary and self.spec.virtual.sd.binary_transfer:
                self._out.append("echo:Switching to Binary Protocol")
                dice = self._dice
                self.bft = BinaryReceiver(
                    self.card, self.spec.virtual.sd.binary_buffer,
                    corrupt=lambda: dice.roll(FaultKind.CORRUPT),
                    lose_ok=lambda: dice.roll(FaultKind.LOST_OK))
                return "ok"
        if not arg:
            self._out.append("echo:open failed, File: .")
            return "ok"
        card = self.card
        card.saving = card.create(arg)
        self._out.append(f"Writing to file: {card.saving.short}")
        return "ok"

    def _m29(self, text: str, now: float) -> str:
        return "ok"  # (not writing: nothing to close)

    def _m30(self, text: str, now: float) -> str:
        if (off := self._sd_off()) is not None:
            return off
        name = text[3:].strip()
        if self.card.delete(name) is not None:
            self._out.append(f"File deleted:{name}")
        else:
            self._out.append(f"Deletion failed, File: {name}.")
        return "ok"

    def _m524(self, text: str, now: float) -> str:
        card = self.card
        if card.selected is not None:
            card.printing, card.selected, card.pos = False, None, 0
            self._sd_step_at = None
            self._sd_plan()
            self._sd_aborted()
        return "ok"


def sd_handlers() -> dict[str, Handler]:
    c = SdMixin
    return {"M20": c._m20, "M21": c._m21, "M22": c._m22, "M23": c._m23, "M24": c._m24,
            "M25": c._m25, "M26": c._m26, "M27": c._m27, "M28": c._m28, "M29": c._m29,
            "M30": c._m30, "M524": c._m524}


def silent(wait: Wait) -> Wait:
    """A wait an SD line started: its end sends no ok to the host."""
    return attrs.evolve(wait, ok="")

