"""The host side of Marlin's binary file transfer (BFT), sans-IO: after `M28 B1` was
acknowledged, `BinaryTransfer` owns the link: SYNC, QUERY, OPEN, WRITE packets of at most
the buffer size the printer reported (`binary_window` of them in flight), FILE CLOSE, then
the connection CLOSE that returns the printer to text. A resend request (`rs<n>`) sends again
from packet n (go-back-N: the printer drops the packets after a bad one); no answer within
`binary_timeout` s sends the unacknowledged packets again, `binary_retries` times at most
in a row. A failure after OPEN sends ABORT (the printer removes the half file) and CLOSE.

Bytes in: `receive_data(data, now)`; bytes out: `data_to_send(now)`; `deadline` and
`handle_timeout(now)` as the session core has them. The file's bytes come in through `feed`
(already checked line by line by the session). Pure: no IO, no clock reads.
"""

from __future__ import annotations

import enum
from collections import deque

from pipeline.config.schema import SdSpec
from pipeline.protocol.bft import Packet, open_payload, packet

INF = float("inf")


class Step(enum.Enum):
    SYNC = "sync"
    QUERY = "query"
    OPEN = "open"
    WRITE = "write"
    FILE_CLOSE = "file close"
    ABORT = "abort"
    CLOSE = "close"
    DONE = "done"


#: The packet a step sends, and whether a `PFT:` answer must follow its ok.
_PACKETS = {Step.QUERY: (Packet.QUERY, True), Step.OPEN: (Packet.OPEN, True),
            Step.FILE_CLOSE: (Packet.FILE_CLOSE, True), Step.ABORT: (Packet.ABORT, True),
            Step.CLOSE: (Packet.CLOSE, False)}


class BinaryTransfer:
    def __init__(self, remote: str, spec: SdSpec, now: float) -> None:
        self.remote = remote
        self._spec = spec
        self.step = Step.SYNC
        self.error: str | None = None
        self.buffer = 0                   # the printer's packet buffer (from its ss answer)
        self.sync = 0                     # the sync number of the next new packet
        self.sent_bytes = 0               # file bytes the printer acknowledged
        self.resends = 0
        self.packets = 0
        self._data = bytearray()          # file bytes not yet in a packet
        self.eof = False
        self._unacked: deque[tuple[int, bytes, int]] = deque()  # (sync, packet, file bytes)
        self._pft_wanted = False          # the control packet's ok came; its PFT: answer not
        self._out = bytearray(packet(Packet.SYNC, 0))
        self._tries = 0
        self.deadline = now + spec.binary_timeout
        self._partial = b""

    @property
    def finished(self) -> bool:
        return self.step is Step.DONE

    @property
    def pending(self) -> int:
        """File bytes waiting to go out (the streamer keeps this topped up)."""
        return len(self._data)

    def feed(self, data: bytes, *, eof: bool = False) -> None:
        self._data += data
        self.eof = self.eof or eof

    def fail(self, why: str) -> None:
        """Give up: ABORT (after OPEN) and CLOSE, or at once before it."""
        if self.error is not None and self.step is not Step.DONE and self._tries == 0:
            return  # already giving up
        if self.error is None:
            self.error = why
        self._unacked.clear()
        self._pft_wanted = False
        if self.step in (Step.WRITE, Step.FILE_CLOSE):
            self._control(Step.ABORT)
        elif self.step in (Step.QUERY, Step.OPEN):
            self._control(Step.CLOSE)
        elif self.step is not Step.SYNC:  # (in SYNC: CLOSE once the sync number is known)
            self.step = Step.DONE

    # ---- sending -----------------------------------------------------------------------------
    def _control(self, step: Step) -> None:
        self.step = step
        kind, _ = _PACKETS[step]
        payload = open_payload(self.remote) if step is Step.OPEN else b""
        self._queue(packet(kind, self.sync, payload), 0)

    def _queue(self, data: bytes, size: int) -> None:
        self._unacked.append((self.sync, data, size))
        self.sync = (self.sync + 1) & 0xFF
        self._out += data
        self.packets += 1

    def data_to_send(self, now: float) -> bytes:
        if self.step is Step.WRITE and not self._pft_wanted:
            room = self._spec.binary_window - len(self._unacked)
            size = self.buffer
            while room > 0 and (len(self._data) >= size or (self.eof and self._data)):
                chunk = bytes(self._data[:size])
                del self._data[:size]
                self._queue(packet(Packet.WRITE, self.sync, chunk), len(chunk))
                room -= 1
            if self.eof and not self._data and not self._unacked:
                self._control(Step.FILE_CLOSE)
        out = bytes(self._out)
        if out:
            self._out.clear()
            self.deadline = now + self._spec.binary_timeout
        return out

    def handle_timeout(self, now: float) -> None:
        if now < self.deadline or self.step is Step.DONE:
            return
        self._tries += 1
        self.resends += 1
        if self._tries > self._spec.binary_retries:
            if self.error is not None or self.step is Step.SYNC:
                self.error = self.error or "the printer did not answer the binary transfer"
                self.step = Step.DONE
                return
            self.fail(f"the printer did not answer {self.step.value} within "
                      f"{self._spec.binary_timeout:g} s, {self._spec.binary_retries} times")
            self._tries = 0
            return
        if self.step is Step.SYNC:
            self._out += packet(Packet.SYNC, 0)
        else:
            for _, data, _ in self._unacked:
                self._out += data
        self.deadline = now + self._spec.binary_timeout

    # ---- receiving -----------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> bytes:
        """Lines from the printer; returns the bytes after the transfer ended (text again)."""
        data = self._partial + data
        while not self.finished:
            i = data.find(b"\n")
            if i < 0:
                self._partial = data
                return b""
            line, data = data[:i].strip().decode("latin-1"), data[i + 1:]
            if line:
                self._line(line, now)
        self._partial = b""
        return data

    def _line(self, line: str, now: float) -> None:
        if line.startswith("ss") and self.step is Step.SYNC:
            fields = line[2:].split(",")
            try:
                self.sync, self.buffer = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                return
            self._progress(now)
            self._control(Step.QUERY if self.error is None else Step.CLOSE)
        elif line.startswith("ok") and line[2:].isdigit():
            self._ok(int(line[2:]), now)
        elif line.startswith("rs") and line[2:].isdigit():
            self._resend(int(line[2:]))
        elif line.startswith("PFT:"):
            self._pft(line[4:], now)
        elif line.startswith("fe"):
            self.fail(f"the printer ended the binary transfer ({line})")

    def _progress(self, now: float) -> None:
        """An answer came: the retries start over; no deadline while nothing is awaited
        (the file's bytes are late)."""
        self._tries = 0
        waiting = self._unacked or self._pft_wanted or self.step is Step.SYNC
        self.deadline = now + self._spec.binary_timeout if waiting else INF

    def _ok(self, n: int, now: float) -> None:
        q = self._unacked
        if not any(s == n for s, _, _ in q):
            return  # a repeat (its ok had been lost) or stale
        while q:
            s, _, size = q.popleft()
            self.sent_bytes += size
            if s == n:
                break
        wants_pft = _PACKETS.get(self.step, (None, False))[1]
        if self.step is Step.CLOSE:
            self.step = Step.DONE
        elif wants_pft and not q:
            self._pft_wanted = True
        self._progress(now)

    def _resend(self, n: int) -> None:
        q = self._unacked
        while q and q[0][0] != n:
            _s, _, size = q.popleft()  # everything before n arrived
            self.sent_bytes += size
        for _, data, _ in q:
            self._out += data
        self.resends += 1

    def _pft(self, answer: str, now: float) -> None:
        if not self._pft_wanted and not (self.step is Step.WRITE and answer != "success"):
            return
        self._pft_wanted = False
        self._progress(now)
        ok = answer.startswith(("success", "version"))
        step = self.step
        if step is Step.WRITE:
            self.fail(f"the printer could not write the file (PFT:{answer})")
        elif step is Step.QUERY:
            self._control(Step.OPEN)
        elif step is Step.OPEN:
            if ok:
                self.step = Step.WRITE
            else:
                self.fail(f"the printer could not open {self.remote} (PFT:{answer})")
        elif step is Step.FILE_CLOSE:
            if not ok:
                self.error = self.error or f"the printer could not close {self.remote}"
            self._control(Step.CLOSE)
        elif step is Step.ABORT:
            self._control(Step.CLOSE)
