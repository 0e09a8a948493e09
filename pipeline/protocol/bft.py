"""Marlin's binary file transfer (BFT) packets, both ways: the values and the codec the host
(session/sd/binary.py) and the virtual printer (virtual/sd/binary.py) share.

A packet is an 8-byte little-endian header (start token 0xB5AD, sync number, protocol id and
packet type in one byte, payload length, a Fletcher-16 checksum of the header after the token),
then, with a payload, the payload and a Fletcher-16 checksum of everything after the token
(the header's checksum included). Facts from Marlin's docs/BinaryFileTransferProtocol.md.
Pure: no IO.
"""

from __future__ import annotations

import enum
import struct

TOKEN = 0xB5AD
TOKEN_BYTES = struct.pack("<H", TOKEN)
HEADER = 8


class Packet(enum.Enum):
    """(protocol id, packet type) of every packet the host sends."""

    SYNC = (0, 1)
    CLOSE = (0, 2)
    QUERY = (1, 0)
    OPEN = (1, 1)
    FILE_CLOSE = (1, 2)
    WRITE = (1, 3)
    ABORT = (1, 4)


def fletcher16(data: bytes | bytearray | memoryview, cs: int = 0) -> int:
    """Marlin's Fletcher-16 over `data`, continuing from `cs`."""
    low, high = cs & 0xFF, cs >> 8
    for b in data:
        low = (low + b) % 255
        high = (high + low) % 255
    return (high << 8) | low


def packet(kind: Packet, sync: int, payload: bytes = b"") -> bytes:
    """One packet as the wire carries it."""
    proto, ptype = kind.value
    head = struct.pack("<BBH", sync & 0xFF, (proto << 4) | ptype, len(payload))
    hcs = fletcher16(head)
    head += struct.pack("<H", hcs)
    if not payload:
        return TOKEN_BYTES + head
    return TOKEN_BYTES + head + payload + struct.pack("<H", fletcher16(payload, fletcher16(head)))


def open_payload(name: str, *, dummy: bool = False, compressed: bool = False) -> bytes:
    """The OPEN packet's payload: dummy flag, compression flag, NUL-terminated name."""
    return bytes((int(dummy), int(compressed))) + name.encode("ascii", "replace") + b"\0"


def parse_header(head: bytes) -> tuple[int, int, int, int, bool]:
    """(sync, protocol, type, payload length, header checksum fine) of the 8 header bytes."""
    sync, meta, size, cs = struct.unpack("<BBHH", head[2:HEADER])
    return sync, meta >> 4, meta & 0xF, size, fletcher16(head[2:6]) == cs
