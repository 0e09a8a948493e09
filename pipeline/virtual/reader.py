"""How Marlin 2 reads a serial line and which lines its parser runs (for the Marlin model).

`line_buffer(raw)` is what Marlin's get_serial_commands() keeps of the bytes of one line (the
`\\n` or `\\r` that ended it not included), character by character as process_stream_char()
reads them, with Marlin's default configuration (no quoted strings, no paren comments):

- `;` starts a comment that lasts to the end of the line;
- `\\` keeps the next character, whatever it is (the backslash itself is dropped);
- a backspace (0x08) erases the last character kept, if any;
- once MAX_CMD_SIZE - 1 characters are kept, the rest of the line is skipped.

A line error (`gcode_line_error`) empties the RX buffer but not this state, which the end of
the bad line has just reset: bytes that arrive afterwards start a new line, so the rest of a
line that was arriving at that moment is read as a line of its own, without its number.

`runs_as_command(buffer)` is what GCodeParser::parse() makes of a line the queue accepted:
spaces and a leading `N<number>` word skipped, then a command letter G, M or T (either case:
GCODE_CASE_INSENSITIVE) followed, after spaces, by a digit; the line is cut at its first `*`.
An unnumbered line is not checked at all before that (only a line that starts with N is).

Pure functions, no IO.
"""

from __future__ import annotations

#: Marlin's default MAX_CMD_SIZE (Configuration_adv.h).
MAX_CMD_SIZE = 96

_SIGNED_DIGITS = b"+-0123456789"
_COMMAND_LETTERS = b"GMTgmt"


def line_buffer(raw: bytes, max_cmd_size: int = MAX_CMD_SIZE) -> bytes:
    """The characters Marlin keeps of the line `raw` (its end-of-line byte excluded)."""
    limit = max_cmd_size - 1
    if (len(raw) < limit and b";" not in raw and b"\\" not in raw
            and b"\x08" not in raw):
        return raw  # the common case: every character is kept
    buf = bytearray()
    escaped = False
    for c in raw:
        if escaped:
            escaped = False         # an escaped character is kept (a backspace still erases)
        elif c == 0x5C:             # backslash: keep the next character as it is
            escaped = True
            continue
        elif c == 0x3B:             # ';': the rest of the line is a comment
            break
        if c == 0x08:
            if buf:
                del buf[-1]
        else:
            buf.append(c)
            if len(buf) >= limit:
                break               # overflow: the rest of the line is skipped
    return bytes(buf)


def runs_as_command(buffer: bytes) -> bool:
    """Marlin's parser finds a G, M or T command with a number in this queued line."""
    p = buffer.lstrip(b" ")
    if p[:1] in (b"N", b"n") and len(p) > 1 and p[1] in _SIGNED_DIGITS:
        space = p.find(b" ")
        p = b"" if space < 0 else p[space + 1:].lstrip(b" ")
    if not p or p[0] not in _COMMAND_LETTERS:
        return False
    star = p.find(b"*")
    rest = (p[1:star] if star >= 0 else p[1:]).lstrip(b" ")
    return rest[:1].isdigit()
