"""G-code read the way the firmware reads it, and written back in one canonical form.

`read(line)` parses one command as Marlin 2's parser does (GCodeParser::parse: spaces are
skipped after the command letter and after a parameter letter, leading zeros are read, any
case is read when the firmware is built case-insensitive, a value may follow its letter
directly, a leading `N<number>` word is skipped, the line ends at `*`) and refuses whatever a
firmware could read in more than one way or a host should never send:

- a repeated word (Marlin's fast parser lets the last one win, its plain parser the first);
- exponents and hex (`1e9` is 1 to `strtol` and 1e9 to `strtod`; `0x190` is 400 to `strtof`);
- `inf` / `nan`, a number with more than 9 digits before the point (a 32-bit `strtol`
  saturates, a 16-bit cast wraps: S65936 is 400 to Marlin), command numbers over 9999
  (`M65640` is M104 once the firmware's 16-bit code number wraps);
- a character that is not part of a word, a checksum (`*`), an escape (`\\`), a comment in
  parentheses, a control character or a line separator;
- a command word that is not G, M or T with a number.

The canonical form is upper case, one space between words, plain decimal numbers (no sign
but `-`, no leading zeros, no exponent), no duplicate words, no comment: `g01x.5 e+0010` is
`G1 X0.5 E10`. Text commands (M117, M118, file names ...) keep their text, which must be
printable and hold no `*`, `\\` or separator; characters beyond ASCII are sent as `?`.

`fast(line)` is the hot path's test: True when `line` is already canonical and names no
command that needs the full reading (`SLOW`), so a plain move costs one precompiled
fullmatch and a set build. Pure: no IO, no trio.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: Commands whose argument is text (a message, a file name, a macro; Prusa's printer and
#: firmware checks `M862.3 P "MK4"` and `M115 U6.0.0`), not words.
TEXT_COMMANDS = frozenset({
    "M0", "M1", "M16", "M23", "M115", "M862", "M28", "M30", "M32", "M33", "M117", "M118", "M928",
    "M810", "M811", "M812", "M813", "M814", "M815", "M816", "M817", "M818", "M819",
    "M291", "M550", "M551", "M587", "M588", "M589",
})
#: Marlin's G-code macros: `M810 G28|G1 X10` stores commands the firmware runs at `M810`.
MACROS = frozenset(f"M{n}" for n in range(810, 820))
#: Commands a fast test never passes: texts, and everything the guard reads value by value.
SLOW = TEXT_COMMANDS | frozenset({
    "M42", "M43", "M104", "M109", "M140", "M141", "M143", "M145", "M190", "M191", "M303",
    "M568", "G10",
})
MAX_INT_DIGITS = 9      # before the decimal point
MAX_CODE = 9999         # G/M/T numbers
MAX_SUBCODE = 99

# A line that is canonical already: a command word, then " L" or " L<number>" words.
_CANONICAL = re.compile(
    r"(?:[GM](?:0|[1-9][0-9]{0,3})(?:\.(?:0|[1-9][0-9]?))?|T(?:0|[1-9][0-9]{0,3}))"
    r"(?: [A-Z](?:-?(?:0|[1-9][0-9]{0,8})(?:\.[0-9]+)?)?)*").fullmatch
# One number as the firmware's parser starts it: [-+]? then digits with at most one point.
_NUMBER = re.compile(r"([-+]?)([0-9]*)(?:\.([0-9]*))?")
_NON_FINITE = re.compile(r"[-+]?(?:inf|nan)", re.IGNORECASE)
_DIGITS = frozenset("0123456789")


class Refused(ValueError):
    """A line the firmware could read in more than one way, or must never get; the message
    is the one-line reason."""


Values = tuple[float, ...]


class Reading(NamedTuple):
    """One command as the firmware reads it."""

    code: str                           # "G1", "M104", "T0", "M862.3"
    words: dict[str, Values | None]     # letter -> its value(s); None: the letter alone
    text: str | None                    # the argument of a text command
    canonical: str                      # what goes on the wire


def fast(line: str, gcode: str | None) -> bool:
    """True when `line` (with G-code word `gcode`) is canonical and needs no full reading."""
    if gcode in SLOW or _CANONICAL(line) is None:
        return False
    words = line.split(" ")
    # a parameter letter equal to the command's own (M42 M1) only sends it the long way
    return len(words) < 3 or len({w[0] for w in words}) == len(words)


def read(line: str) -> Reading:
    """Read `line` (no line number, no comment) as the firmware will; Refused if it cannot
    be read one way only."""
    _printable(line)
    s = line.split(";", 1)[0].strip(" ")  # the firmware's reader drops a comment
    if s[:1] in ("N", "n") and s[1:2] in _SIGNED:  # a line number: the firmware skips it
        skipped, sep, s = s.partition(" ")
        if not sep:
            raise Refused(f"nothing follows the line number {skipped!r}")
        s = s.lstrip(" ")
    if not s:
        raise Refused("it is empty")
    letter = s[0].upper()
    if letter not in ("G", "M", "T"):
        word = s.split(" ", 1)[0]
        raise Refused(f"{_short(word)!r} is not a G-code command (G, M or T and a number)")
    i = _skip_spaces(s, 1)
    j = i
    while j < len(s) and s[j] in _DIGITS:
        j += 1
    if j == i:
        raise Refused(f"{_short(s)!r} has no command number after {s[0]!r}")
    number = int(s[i:j])
    if number > MAX_CODE:
        raise Refused(f"{letter}{s[i:j]} is not a command number a firmware reads "
                      f"(at most {MAX_CODE})")
    code = f"{letter}{number}"
    if letter != "T" and j < len(s) and s[j] == ".":
        k = j + 1
        while k < len(s) and s[k] in _DIGITS:
            k += 1
        if k == j + 1 or int(s[j + 1:k]) > MAX_SUBCODE:
            raise Refused(f"{_short(s[:k])!r} has no valid subcode")
        code = f"{code}.{int(s[j + 1:k])}"
        j = k
    base = code.partition(".")[0]
    if base in TEXT_COMMANDS:
        return _text_command(code, base, s[j:])
    if j < len(s) and s[j] not in " ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        raise Refused(f"{_short(s[:j + 1])!r}: the command number must end before "
                      f"{s[j]!r}")
    words: dict[str, Values | None] = {}
    parts = [code]
    n = len(s)
    while j < n:
        c = s[j]
        if c == " ":
            j += 1
            continue
        upper = c.upper()
        if not "A" <= upper <= "Z":
            raise Refused(f"unexpected {c!r} at {j + 1} of {_short(line)!r}")
        if upper in words:
            raise Refused(f"{upper} is given twice: firmwares differ on which one counts")
        after = j + 1
        j = _skip_spaces(s, after)
        if j < n and (s[j] in _DIGITS or s[j] in "-+."):
            values, texts, j = _numbers(s, j, upper)
            words[upper] = values
            parts.append(upper + ":".join(texts))
            continue
        m = _NON_FINITE.match(s, j)
        if m is not None:
            raise Refused(f"{upper + m.group(0)[:4]!r} is not a finite number")
        if after < n and s[after] != " ":
            raise Refused(f"{upper}{_short(s[after:].split(' ', 1)[0])} is not a number: put "
                          "a space between words")
        words[upper] = None
        parts.append(upper)
        j = after
    return Reading(code, words, None, " ".join(parts))


_SIGNED = frozenset("0123456789-+")


def _numbers(s: str, j: int, letter: str) -> tuple[Values, list[str], int]:
    """The value(s) of word `letter` starting at s[j]: one number, or several joined by `:`
    (RepRapFirmware's lists)."""
    values: list[float] = []
    texts: list[str] = []
    while True:
        m = _NUMBER.match(s, j)
        assert m is not None  # the pattern matches the empty string
        sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
        end = m.end()
        if not whole and not frac:
            rest = s[j:].split(" ", 1)[0]
            nf = _NON_FINITE.match(s, j)
            if nf is not None:
                raise Refused(f"{letter + nf.group(0)[:4]!r} is not a finite number")
            raise Refused(f"{letter}{_short(rest)} is not a number")
        if len(whole.lstrip("0")) > MAX_INT_DIGITS:
            raise Refused(f"{letter}{_short(s[j:end])} has more than {MAX_INT_DIGITS} digits "
                          "before the point")
        if end < len(s) and s[end] in "eExX":
            what = "an exponent" if s[end] in "eE" else "a hex number"
            raise Refused(f"{letter}{_short(s[j:].split(' ', 1)[0])} looks like {what}: "
                          "only plain decimal numbers are sent (put a space before a word)")
        text = ("-" if sign == "-" else "") + (whole.lstrip("0") or "0")
        if frac:
            text += "." + frac
        texts.append(text)
        values.append(float(text))
        j = end
        if j < len(s) and s[j] == ":":
            j += 1
            continue
        if j < len(s) and s[j] != " " and not s[j].isalpha():
            if s[j] in _DIGITS or s[j] in "-+.":
                raise Refused(f"{letter}{_short(s[m.start():].split(' ', 1)[0])} is not a "
                              "number")
            raise Refused(f"unexpected {s[j]!r} after {letter}{_short(s[m.start():j])}")
        return tuple(values), texts, j


def _text_command(code: str, base: str, rest: str) -> Reading:
    text = rest.strip(" ")
    for bad, why in (("*", "a checksum mark"), ("\\", "an escape")):
        if bad in text:
            raise Refused(f"the text of {code} holds {why} ({bad!r})")
    if not text.isascii():
        text = "".join(c if c < "\x7f" else "?" for c in text)
    if base in MACROS and text:
        # a macro: each of its commands is what the firmware will run later
        text = "|".join(read(part).canonical for part in text.split("|"))
    return Reading(code, {}, text, f"{code} {text}" if text else code)


def _printable(line: str) -> None:
    if line.isprintable():
        return
    for i, c in enumerate(line):
        if not c.isprintable():
            if c < " " or c == "\x7f":
                raise Refused(f"it contains a control character ({c!r} at {i}): one command "
                              "is one line")
            raise Refused(f"it contains {c!r} at {i}, a line separator or unprintable "
                          "character: one command is one line")


def _skip_spaces(s: str, j: int) -> int:
    while j < len(s) and s[j] == " ":
        j += 1
    return j


def _short(text: str, most: int = 24) -> str:
    return text if len(text) <= most else text[:most] + "..."
