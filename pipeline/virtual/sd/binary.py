"""The firmware side of Marlin's binary file transfer, as Marlin's BinaryStream and
SDFileTransferProtocol answer it (facts from docs/BinaryFileTransferProtocol.md and
src/feature/binary_stream.h): `ss<sync>,<buffer>,0.1.0` to SYNC, `ok<sync>` for every other
good packet, then the packet's own answer (`PFT:success`, `PFT:fail`, `PFT:busy`,
`PFT:invalid`); a bad header or payload asks `rs<sync>` after `Resend request <n>`; while a
resend is asked, packets out of order are dropped without a word; a packet of the sync before
is answered `ok<sync>` again (its ok was lost) and not written twice.

`BinaryReceiver.feed(data)` takes bytes and returns (reply lines, bytes left after the
connection CLOSE packet, which are text again). Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.protocol.bft import HEADER, TOKEN_BYTES, fletcher16, parse_header
from pipeline.virtual.sd.card import SdCard, SdFile


def _never() -> bool:
    return False


class BinaryReceiver:
    def __init__(self, card: SdCard, buffer_size: int, *,
                 corrupt: Callable[[], bool] = _never, lose_ok: Callable[[], bool] = _never
                 ) -> None:
        self.card = card
        self.buffer_size = buffer_size
        self.active = True
        self.sync = 0
        self.retries = 0
        self.packets = 0        # good packets taken
        self.resends = 0        # resend requests sent
        self._buf = bytearray()
        self._file: SdFile | None = None
        self._corrupt = corrupt
        self._lose_ok = lose_ok

    def feed(self, data: bytes) -> tuple[list[str], bytes]:
        out: list[str] = []
        buf = self._buf
        buf += data
        while self.active:
            i = buf.find(TOKEN_BYTES)
            if i < 0:
                del buf[:max(len(buf) - 1, 0)]  # (stream noise: keep a possible first byte)
                break
            del buf[:i]
            if len(buf) < HEADER:
                break
            sync, proto, ptype, size, head_ok = parse_header(bytes(buf[:HEADER]))
            if not head_ok:
                out.append(f"echo:Packet header({sync}?) corrupt")
                self._resend(out)
                del buf[:2]
                continue
            if proto == 0 and ptype == 1:  # SYNC: answered whatever its sync number
                out.append(f"ss{self.sync},{self.buffer_size},0.1.0")
                del buf[:HEADER]
                continue
            if size > self.buffer_size:
                out.append("echo:Datastream packet data buffer overrun")
                out.append(f"fe{sync}")
                self.sync, self.retries = 0, 0
                del buf[:HEADER]
                continue
            need = HEADER + size + (2 if size else 0)
            if sync != self.sync:
                if sync == (self.sync - 1) & 0xFF:
                    if len(buf) < need:
                        break
                    out.append(f"ok{sync}")  # its ok was lost: acknowledged, not taken again
                elif not self.retries:
                    out.append("echo:Datastream packet out of order")
                    self._resend(out)
                del buf[:need if len(buf) >= need else 2]
                continue
            if len(buf) < need:
                break
            if size:
                payload = bytes(buf[HEADER:HEADER + size])
                footer = int.from_bytes(buf[HEADER + size:need], "little")
                if footer != fletcher16(buf[2:HEADER + size]) or self._corrupt():
                    out.append(f"echo:Packet({sync}) payload corrupt")
                    self._resend(out)
                    del buf[:need]
                    continue
            else:
                payload = b""
            del buf[:need]
            self.sync = (self.sync + 1) & 0xFF
            self.retries = 0
            self.packets += 1
            if not self._lose_ok():
                out.append(f"ok{sync}")
            self._dispatch(proto, ptype, payload, out)
        rest = b""
        if not self.active:
            rest, self._buf = bytes(buf), bytearray()
        return out, rest

    def _resend(self, out: list[str]) -> None:
        self.retries += 1
        self.resends += 1
        out.append(f"echo:Resend request {self.retries}")
        out.append(f"rs{self.sync}")

    def _dispatch(self, proto: int, ptype: int, payload: bytes, out: list[str]) -> None:
        card = self.card
        if proto == 0:
            if ptype == 2:
                self.active = False
            else:
                out.append("echo:Unknown BinaryProtocolControl Packet")
            return
        if proto != 1:
            out.append("echo:Unsupported Binary Protocol")
            return
        if ptype == 0:
            out.append("PFT:version:0.1.0:compression:none")
        elif ptype == 1:
            if self._file is not None:
                out.append("PFT:busy")
                return
            name = payload[2:].split(b"\0", 1)[0].decode("latin-1")
            if not card.mounted or not name or payload[1:2] == b"\x01":
                out.append("PFT:fail")
                return
            self._file = card.create(name)
            out.append("PFT:success")
        elif ptype == 2:
            out.append("PFT:success" if self._file is not None else "PFT:invalid")
            self._file = None
        elif ptype == 3:
            if self._file is None:
                out.append("PFT:invalid")
            else:
                self._file.data += payload
        elif ptype == 4:
            if self._file is not None:
                card.delete(self._file.short)
                self._file = None
            out.append("PFT:success")
        else:
            out.append("PTF:invalid")
