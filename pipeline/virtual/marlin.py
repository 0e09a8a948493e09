"""Marlin's serial model for the virtual printer (`virtual.marlin.enabled`), sans-IO.

`MarlinFirmware` is the virtual firmware with Marlin 2.1's serial path in simulated time:

- bytes from the host cross the wire at the configured baud rate (10 bits a byte) and land
  in an RX ring buffer of `rx_buffer` bytes (one stays free); bytes arriving while it is full
  are lost, as on a real UART (`rx_lost` counts them);
- lines leave the RX buffer only while the command queue (`bufsize` slots) has room; a line
  is checked (number, checksum) as it is read and takes a slot until it has executed;
- a move goes into a planner of `planner` blocks, each taking `move_time`; its ok comes once
  it is planned (at once while the planner has room). G4, G28, G29, M400 and the heat-and-wait
  commands first wait for the planned moves;
- oks read `ok N<line> P<planner free> B<queue free>` with `advanced_ok`;
- lines are read as Marlin's reader does (reader.py: comments, escapes, backspaces), and
  only every `read_interval` s (the main loop reads the port between its other work), so
  the bytes behind a line are often arriving when it is checked;
- a line error flushes the RX buffer (what is still on the wire arrives afterwards) and asks
  `Resend: N` then `ok`; a duplicate of the last line number is dropped without a word. The
  rest of a line the flush cut is read as a line of its own, unnumbered and unchecked:
  `fragments` counts such tails, `fragments_run` those Marlin's parser runs as a command
  (`fragment_lines` and `fragment_commands` hold them as `accepted` does);
- M108 and M112 act as their bytes arrive (Marlin's emergency parser);
- replies cross the wire back at the same rate.

The plain model (firmware.py) answers at once and stays what the other tests use.
No IO, no trio, no clock: every call carries `now`.
"""

from __future__ import annotations

import math
import re
from collections import deque

from pipeline.virtual.firmware import FirmwareSpec, LineError, VirtualFirmware
from pipeline.virtual.reader import line_buffer, runs_as_command
from pipeline.virtual.waits import Wait, WaitKind

_EMERGENCY_RE = re.compile(rb"(?:^|\n)\s*(?:N\d+\s*)?(M108|M112)(?!\d)")
#: Commands that wait for the planned moves before they run (planner.synchronize()).
_SYNC = frozenset({"G4", "G28", "G29", "M400", "M109", "M190", "M191"})
#: The line number of a queued line that came from the SD card.
SD_LINE = -1


def make_firmware(spec: FirmwareSpec, *, now: float = 0.0) -> VirtualFirmware:
    """The firmware model `spec` describes: Marlin's serial model when it is enabled."""
    if spec.virtual.marlin.enabled:
        return MarlinFirmware(spec, now=now)
    return VirtualFirmware(spec, now=now)


class MarlinFirmware(VirtualFirmware):
    def __init__(self, spec: FirmwareSpec, *, now: float = 0.0) -> None:
        m = spec.virtual.marlin
        self._bufsize = m.bufsize
        self._planner_size = m.planner
        self._move_time = m.move_time
        self._advanced = m.advanced_ok
        self._byte_time = 10.0 / m.baudrate if m.baudrate else 0.0
        self._read_interval = m.read_interval       # the reader runs at multiples of this
        self._cut = False                           # the next line read is the rest of a line
        self._rx_cap = m.rx_buffer - 1
        self._wire: deque[list[object]] = deque()  # [start, data, taken]: host -> printer
        self._tx_free = now
        self._rx = bytearray()
        self._tail = b""                            # the emergency parser's last bytes
        self._cmdq: deque[tuple[int | None, str]] = deque()
        self._running = False                       # the queue's head is executing
        self._planner: deque[float] = deque()       # end times of the planned moves
        self._outq: deque[tuple[float, bytes]] = deque()  # printer -> host
        self._out_free = now
        self.rx_lost = 0        # bytes lost to a full RX buffer
        self.max_rx = 0         # the most bytes the RX buffer held
        self.max_queue = 0      # the most lines the command queue held
        self.flushed = 0        # bytes discarded by line errors
        self.fragments = 0      # rests of lines read as lines of their own
        self.fragments_run = 0  # ... that Marlin's parser runs as a command
        self.fragment_lines: list[str] = []     # every rest queued (cut at its `*`)
        self.fragment_commands: list[str] = []  # ... those that run as a command
        self._t = now           # how far the simulation has run
        super().__init__(spec, now=now)
        self._sd_queue_mode = True
        self._drop_duplicates = True
        self._flush_out(now)

    # ---------------------------------------------------------------- public API

    def receive_data(self, data: bytes, now: float) -> None:
        if self.killed:
            return
        self._run(now)
        start = self._tx_free if self._tx_free > now else now
        self._tx_free = start + len(data) * self._byte_time
        self._wire.append([start, data, 0])
        self._run(now)

    def data_to_send(self, now: float) -> bytes:
        self._run(now)
        outq = self._outq
        if not outq or outq[0][0] > now:
            return b""
        parts = []
        while outq and outq[0][0] <= now:
            parts.append(outq.popleft()[1])
        return b"".join(parts)

    def next_deadline(self) -> float | None:
        best = min(self._next_line(), self._next_timed(), self._next_emergency())
        if self._outq and self._outq[0][0] < best:
            best = self._outq[0][0]
        return None if best == math.inf else best

    # ---------------------------------------------------------------- simulated time

    def _run(self, now: float) -> None:
        """Everything due by `now`, in time order: line reads, timed events, replies."""
        while not self.killed:
            t_line, t_timed = self._next_line(), self._next_timed()
            t_em = self._next_emergency()
            t = min(t_line, t_timed, t_em)
            if t > now:
                break
            if t < self._t:
                t = self._t
            self._t = t
            self._arrive(t)
            if t_line <= t and not self.killed:
                if self.bft is not None:
                    pass  # binary: the bytes went to the transfer as they arrived
                elif b"\n" not in self._rx:
                    break  # (never spin: the line is not in, whatever the float said)
                self._read_lines(t)
            elif t_timed <= t and not self.killed:
                self._advance(t)
            self._flush_out(t)
        if not self.killed and now >= self._t:
            self._t = now
            self._arrive(now)
            self._flush_out(now)

    def _next_timed(self) -> float:
        t = math.inf
        wait = self._wait
        if wait is not None:
            t = wait.end
            if self._next_report is not None and self._next_report < t:
                t = self._next_report
            if self._next_busy is not None and self._next_busy < t:
                t = self._next_busy
        if self._next_auto is not None and self._next_auto < t:
            t = self._next_auto
        if self._sd_at is not None and self._sd_at < t:
            t = self._sd_at
        return t

    def _arrival(self, chunk: list[object], i: int) -> float:
        """When byte `i` of a wire chunk has arrived."""
        return chunk[0] + (i + 1) * self._byte_time  # type: ignore[operator]

    def _next_line(self) -> float:
        """When the next whole line can be read (inf while the queue is full)."""
        if len(self._cmdq) >= self._bufsize or self.killed:
            return math.inf
        if self.bft is not None:  # binary: bytes are taken as they arrive
            return self._tx_free if self._wire else math.inf
        if b"\n" in self._rx:
            return self._tick(self._t)
        for chunk in self._wire:
            data: bytes = chunk[1]  # type: ignore[assignment]
            i = data.find(b"\n", chunk[2])  # type: ignore[arg-type]
            if i >= 0:
                return self._tick(self._arrival(chunk, i))
        return math.inf

    def _tick(self, t: float) -> float:
        """The reader's first run at or after `t`."""
        every = self._read_interval
        if not every:
            return t
        k = math.ceil(t / every)
        tick = k * every
        return tick if tick >= t else (k + 1) * every

    def _next_emergency(self) -> float:
        """When the next M108/M112 on the wire arrives (it acts before it is read)."""
        if self.bft is not None:
            return math.inf
        for chunk in self._wire:
            data: bytes = chunk[1]  # type: ignore[assignment]
            taken: int = chunk[2]  # type: ignore[assignment]
            if b"M1" not in data[taken:]:
                continue
            for m in _EMERGENCY_RE.finditer(data, taken):
                return self._arrival(chunk, m.end() - 1)
        return math.inf

    def _arrive(self, t: float) -> None:
        """Bytes that reached the printer by `t` go into the RX buffer (or are lost)."""
        wire = self._wire
        bt = self._byte_time
        while wire:
            chunk = wire[0]
            start: float = chunk[0]  # type: ignore[assignment]
            data: bytes = chunk[1]  # type: ignore[assignment]
            taken: int = chunk[2]  # type: ignore[assignment]
            # (a tolerance: on trio's clock `t` is large and `(t - start) / bt` inexact)
            upto = len(data) if bt == 0.0 else min(len(data), int((t - start) / bt + 1e-4))
            if upto > taken:
                piece = data[taken:upto]
                chunk[2] = upto
                if self.bft is not None:
                    piece = self.feed_binary(piece)  # what is left after it is text again
                self._emergency_scan(piece, t)
                room = self._rx_cap - len(self._rx)
                if len(piece) > room:
                    self.rx_lost += len(piece) - room
                    piece = piece[:room]
                self._rx += piece
                if len(self._rx) > self.max_rx:
                    self.max_rx = len(self._rx)
            if upto < len(data):
                return
            wire.popleft()

    def _emergency_scan(self, piece: bytes, t: float) -> None:
        text = self._tail + piece
        if b"M1" in text:
            for m in _EMERGENCY_RE.finditer(text):
                if m.end() > len(self._tail):
                    self._emergency(m.group(0).strip(), t)
                    if self.killed:
                        return
        self._tail = text[-12:]

    def _read_lines(self, t: float) -> None:
        """Marlin's get_serial_commands(): whole lines while the queue has room."""
        rx = self._rx
        while len(self._cmdq) < self._bufsize and not self.killed:
            i = rx.find(b"\n")
            if i < 0:
                break
            raw = bytes(rx[:i])
            del rx[:i + 1]
            if b"\r" in raw:  # (Marlin ends a line at \r too)
                for part in raw.split(b"\r"):
                    self._take_line(part, t)
            else:
                self._take_line(raw, t)
        self._pump(t)

    def _take_line(self, raw: bytes, t: float) -> None:
        """One line as Marlin's reader keeps it: numbered lines are checked, an unnumbered
        one goes to the queue as it is (counted when it is the rest of a cut line)."""
        tail, self._cut = self._cut, False
        line = line_buffer(raw).strip()
        if not line:
            return
        if tail and line[0] != 78:  # b"N": the rest of a line, read without its number
            self.fragments += 1
            star = line.find(b"*")
            text = (line[:star] if star >= 0 else line).strip().decode("latin-1")
            if text:
                self.fragment_lines.append(text)
            if runs_as_command(line):
                self.fragments_run += 1
                self.fragment_commands.append(text)
        self._handle(line, t)

    def _flush_out(self, t: float) -> None:
        """Replies written at `t` cross the wire back to the host."""
        out = self._out
        if not out:
            return
        bt = self._byte_time
        free = self._out_free if self._out_free > t else t
        for line in out:
            data = line.encode("latin-1", "replace") + b"\n"
            free += len(data) * bt
            self._outq.append((free, data))
        self._out_free = free
        out.clear()

    # ---------------------------------------------------------------- the command queue

    def _execute(self, text: str, now: float) -> None:
        """A checked line takes a queue slot; it runs when its turn comes."""
        self._cmdq.append((self._line_n, text))
        if len(self._cmdq) > self.max_queue:
            self.max_queue = len(self._cmdq)

    def _empty_line(self, now: float) -> None:
        self._execute("", now)

    def _pump(self, t: float) -> None:
        """Run queued commands until one has to wait."""
        q = self._cmdq
        card = self.card
        while not self.killed:
            if card.printing and not self._running:
                self._sd_fill()
            if not q or self._running:
                break
            text = q[0][1]
            word = text.split(None, 1)[0] if text else ""
            if word in _SYNC and self._planned_until(t) > t:
                self._running = True
                self._start_wait(Wait(WaitKind.SYNC, self._planner[-1], busy=True), t)
                return
            self._dispatch_head(t)

    def _dispatch_head(self, t: float) -> None:
        n, text = self._cmdq[0]
        if not text:
            self._finish("ok", t)
            return
        self._running = True
        if n == SD_LINE:
            self._sd_exec(text, t)
            if self._running and self._wait is None:
                self._finish("", t)
            return
        self.accepted.append(text)
        self._executed += 1
        ok = self._dispatch(text, t)
        if ok is not None:
            self._finish(ok, t)

    def _sd_fill(self) -> None:
        """The card's next lines into the queue, one slot kept for the host's lines."""
        q, card = self._cmdq, self.card
        while card.printing and len(q) < max(self._bufsize - 1, 1):
            text = card.next_line()
            if text is None:
                self._sd_finished()
                return
            if text:
                q.append((SD_LINE, text))

    def _sd_aborted(self) -> None:
        q = self._cmdq
        head = [q.popleft()] if q and self._running else []
        rest = [e for e in q if e[0] != SD_LINE]
        q.clear()
        q.extend(head + rest)

    def _finish(self, ok: str, now: float) -> None:
        q = self._cmdq
        n = q[0][0] if q else None
        if n == SD_LINE:  # a line from the card: no ok for the host
            q.popleft()
            self._running = False
            return
        if ok == "ok" and self._advanced:
            free = self._planner_size - len(self._planner)
            b = self._bufsize - len(q)
            ok = f"ok N{n} P{free} B{b}" if n is not None else f"ok P{free} B{b}"
        if q:
            q.popleft()
        self._running = False
        super()._finish(ok, now)

    def _end_wait(self, t: float) -> None:
        wait = self._wait
        assert wait is not None
        self._wait = None
        self._next_report = self._next_busy = None
        if wait.kind is WaitKind.SYNC:
            self._running = False
            if self._cmdq:
                self._dispatch_head(t)
        else:
            if wait.kind is WaitKind.MOVE:
                self._plan(t)
            self._finish(wait.ok, t)
        self._pump(t)

    # ---------------------------------------------------------------- the planner

    def _planned_until(self, t: float) -> float:
        p = self._planner
        while p and p[0] <= t:
            p.popleft()
        return p[-1] if p else t

    def _plan(self, t: float) -> None:
        last = self._planned_until(t)
        self._planner.append(last + self._move_time)

    def _moved(self, now: float) -> str | None:
        self._planned_until(now)
        if len(self._planner) < self._planner_size:
            self._plan(now)
            return "ok"
        self._start_wait(Wait(WaitKind.MOVE, self._planner[0]), now)  # a block must finish
        return None

    # ---------------------------------------------------------------- errors and resets

    def _line_error(self, err: LineError) -> None:
        """Marlin's gcode_line_error(): what waits in the RX buffer is thrown away."""
        rx = self._rx
        self.flushed += len(rx)
        if rx and rx[-1] != 10:
            self._cut = True  # the flush ended mid-line: its rest arrives on its own
        rx.clear()
        super()._line_error(err)

    def _boot(self, now: float) -> None:
        if hasattr(self, "_cmdq"):
            self._cmdq.clear()
            self._planner.clear()
            self._rx.clear()
            self._running = False
        super()._boot(now)

    def _die(self) -> None:
        super()._die()
        self._cmdq.clear()
        self._rx.clear()
        self._wire.clear()
        self._running = False
