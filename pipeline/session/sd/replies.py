"""Marlin's SD card reply lines, read one at a time (`SdReply`, `read_sd_line`), and the 8.3
name a file gets on the card (`dos_name`). Lines are already stripped of their line ending;
`echo:` prefixes are optional. Pure, regexes compiled once.
"""

from __future__ import annotations

import enum
import re

_OPENED = re.compile(r"File opened:\s*(.*?)\s+Size:\s*(\d+)")
_PRINTING = re.compile(r"SD printing byte (\d+)/(\d+)")
_DOS_BAD = re.compile(r"[^a-z0-9_~!#$%&'@^`{}-]")


class SdReply(enum.Enum):
    CARD_OK = "SD card ok"
    CARD_GONE = "card gone"          # init failed, released, removed
    CARD_INSERTED = "SD card inserted"
    LIST_BEGIN = "Begin file list"
    LIST_END = "End file list"
    OPENED = "File opened"
    SELECTED = "File selected"
    OPEN_FAILED = "open failed"
    PRINTING_BYTE = "SD printing byte"
    NOT_PRINTING = "Not SD printing"
    DONE_PRINTING = "Done printing file"
    WRITING = "Writing to file"
    DONE_SAVING = "Done saving file."
    DELETED = "File deleted"
    DELETE_FAILED = "Deletion failed"
    BINARY = "Switching to Binary Protocol"


#: Every prefix an SD line starts with (after `echo:`): one startswith() per received line.
_PREFIXES: tuple[tuple[str, SdReply], ...] = (
    ("SD card ok", SdReply.CARD_OK), ("SD init fail", SdReply.CARD_GONE),
    ("No SD card", SdReply.CARD_GONE), ("volume.init failed", SdReply.CARD_GONE),
    ("SD card released", SdReply.CARD_GONE), ("SD card removed", SdReply.CARD_GONE),
    ("SD card inserted", SdReply.CARD_INSERTED),
    ("Begin file list", SdReply.LIST_BEGIN), ("End file list", SdReply.LIST_END),
    ("File opened:", SdReply.OPENED), ("File selected", SdReply.SELECTED),
    ("open failed", SdReply.OPEN_FAILED), ("SD printing byte", SdReply.PRINTING_BYTE),
    ("Not SD printing", SdReply.NOT_PRINTING), ("Done printing file", SdReply.DONE_PRINTING),
    ("Writing to file:", SdReply.WRITING), ("Done saving file", SdReply.DONE_SAVING),
    ("File deleted:", SdReply.DELETED), ("Deletion failed", SdReply.DELETE_FAILED),
    ("Switching to Binary Protocol", SdReply.BINARY),
)
_FIRST = frozenset(p[0] for p, _ in _PREFIXES)


def read_sd_line(line: str) -> tuple[SdReply, str] | None:
    """(kind, the text after `echo:`) of an SD reply line, else None."""
    text = line[5:].lstrip() if line.startswith("echo:") else line
    if not text or text[0] not in _FIRST:
        return None
    for prefix, kind in _PREFIXES:
        if text.startswith(prefix):
            return kind, text
    return None


def opened(text: str) -> tuple[str, int] | None:
    """(name, size) of `File opened: NAME Size: N`."""
    m = _OPENED.match(text)
    return (m.group(1), int(m.group(2))) if m else None


def printing_byte(text: str) -> tuple[int, int] | None:
    m = _PRINTING.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def list_entry(line: str) -> tuple[str, int, str] | None:
    """(short name, size, long name) of an M20 line (`NAME SIZE [0xTIME] [LONG NAME]`)."""
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    name, size = parts[0], int(parts[1])
    rest = parts[2] if len(parts) > 2 else ""
    if rest.startswith("0x"):
        rest = rest.partition(" ")[2]
    return name, size, rest.strip() or name


def dos_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The 8.3 name (lower case) a local file is stored under on the card: as OctoPrint
    does, so Marlin without long-name support can open it."""
    base, dot, ext = name.rpartition("/")[2].rpartition(".")
    if not dot:
        base, ext = ext, ""
    base = _DOS_BAD.sub("", base.lower()) or "file"
    ext = _DOS_BAD.sub("", ext.lower())[:3] or "gco"
    if len(base) <= 8 and f"{base}.{ext}" not in taken:
        return f"{base}.{ext}"
    for n in range(1, 1000):
        tail = f"~{n}"
        candidate = f"{base[:8 - len(tail)]}{tail}.{ext}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"no 8.3 name left for {name}")
