"""The virtual SD card: files in memory under Marlin's 8.3 short names (with their long
names), the listing M20 prints, and the file being printed or written. Pure values and
byte work; no IO (a folder-backed card would load and save these bytes at the edge).
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[^A-Z0-9_~!#$%&'@^`{}-]")


class SdFile:
    __slots__ = ("data", "long", "short", "stamp")

    def __init__(self, short: str, long: str, stamp: int = 0) -> None:
        self.short = short
        self.long = long
        self.data = bytearray()
        self.stamp = stamp


def short_name(name: str, taken: set[str]) -> str:
    """The 8.3 name FAT gives `name` (upper case; `BASE~N.EXT` when it does not fit)."""
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""
    b, e = _SAFE.sub("", base.upper()), _SAFE.sub("", ext.upper())[:3]
    if base.upper() == b and len(b) <= 8 and ext.upper() == e and b:
        plain = f"{b}.{e}" if e else b
        if plain not in taken:
            return plain
    for n in range(1, 100):
        tail = f"~{n}"
        candidate = b[:8 - len(tail)] + tail + (f".{e}" if e else "")
        if candidate not in taken:
            return candidate
    raise ValueError(f"no short name left for {name}")


class SdCard:
    """The card: inserted, mounted (M21), its files, and the open file's state."""

    def __init__(self, *, long_names: bool = True) -> None:
        self.long_names = long_names
        self.inserted = True
        self.mounted = False
        self.files: dict[str, SdFile] = {}
        self.selected: SdFile | None = None
        self.pos = 0                 # the next byte of the selected file to read
        self.printing = False
        self.saving: SdFile | None = None
        self._stamp = 0

    def find(self, name: str) -> SdFile | None:
        key = name.strip().lstrip("/").upper()
        found = self.files.get(key)
        if found is not None:
            return found
        for f in self.files.values():
            if f.long.upper() == key:
                return f
        return None

    def create(self, name: str) -> SdFile:
        """A new empty file (an existing one of that name is replaced)."""
        name = name.strip().lstrip("/")
        old = self.find(name)
        if old is not None:
            del self.files[old.short]
        self._stamp += 1
        f = SdFile(short_name(name, set(self.files)), name, self._stamp)
        self.files[f.short] = f
        return f

    def delete(self, name: str) -> SdFile | None:
        f = self.find(name)
        if f is not None:
            del self.files[f.short]
            if self.selected is f:
                self.selected, self.printing = None, False
        return f

    def listing(self, *, long: bool = False, times: bool = False) -> list[str]:
        """The lines between `Begin file list` and `End file list`."""
        out = []
        for f in self.files.values():
            line = f"{f.short} {len(f.data)}"
            if times:
                line += f" 0x{0x58210000 + f.stamp:X}"
            if long and self.long_names:
                line += f" {f.long}"
            out.append(line)
        return out

    def next_line(self) -> str | None:
        """The next line of the selected file as Marlin's reader keeps it (comment and
        spaces dropped; "" for a blank line), or None at the end of the file."""
        f = self.selected
        if f is None:
            return None
        data = f.data
        pos = self.pos
        if pos >= len(data):
            return None
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        raw = bytes(data[pos:end])
        self.pos = end + 1 if end < len(data) else end
        if b";" in raw:
            raw = raw.split(b";", 1)[0]
        return raw.strip().decode("latin-1")

    def status(self) -> str:
        """M27's answer."""
        f = self.selected
        if f is None or not (self.printing or self.pos):
            return "Not SD printing"
        return f"SD printing byte {min(self.pos, len(f.data))}/{len(f.data)}"
