"""A model of how Marlin 2 reads one G-code line, written from its source
(Marlin/src/gcode/parser.cpp GCodeParser::parse and parser.h's value accessors) as the oracle of
tests/test_wire.py's differential fuzz test. It follows the C code step by step, including
what a host must never rely on: `strtof` reads hex, `strtol` saturates at 32 bits and the
16-bit casts wrap, the fast parser lets a repeated word win and the plain one the first.

Two build options matter: FASTER_GCODE_PARSER (`faster`) and GCODE_CASE_INSENSITIVE
(`any_case`).
"""

from __future__ import annotations

import re

import attrs

#: M codes whose whole argument is one string (parse() returns before reading words).
STRING_CODES = frozenset({16, 23, 28, 30, 117, 118, 928, *range(810, 820)})
_FLOAT_PREFIX = re.compile(
    r"\s*[-+]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][-+]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf(?:inity)?|nan)", re.IGNORECASE)
_LONG_PREFIX = re.compile(r"\s*[-+]?[0-9]+")


@attrs.frozen
class Parsed:
    letter: str                      # G, M, T or "?" (unknown)
    codenum: int
    subcode: int
    params: dict[str, str | None]    # letter -> the text its value pointer points at
    string_arg: str | None
    args: str                        # command_args (the plain parser scans these)

    @property
    def command(self) -> str | None:
        if self.letter == "?":
            return None
        return f"{self.letter}{self.codenum}" + (f".{self.subcode}" if self.subcode else "")


def _valid_signless(p: str) -> bool:
    return p[:1].isdigit() or (p[:1] == "." and p[1:2].isdigit())


def valid_float(p: str) -> bool:
    return _valid_signless(p) or (p[:1] in ("-", "+") and _valid_signless(p[1:3]))


def _extract_int(p: str) -> tuple[int, str]:
    i = 0
    while i < len(p) and p[i].isdigit():
        i += 1
    return (int(p[:i]) if i else 0), p[i:]


def parse(line: str, *, faster: bool = True, any_case: bool = True) -> Parsed:
    def upper(c: str) -> str:
        return c.upper() if any_case and "a" <= c <= "z" else c

    p = line.lstrip(" ")
    if upper(p[:1]) == "N" and p[1:2] in tuple("-+0123456789"):
        p = p.split(" ", 1)[1] if " " in p else ""
        p = p.lstrip(" ")
    letter = upper(p[:1]) if p else ""
    p = p[1:]
    star = p.find("*")
    if star >= 0:
        p = p[:star].rstrip(" ")
    unknown = Parsed("?", 0, 0, {}, None, "")
    if letter not in ("G", "M", "T"):
        return unknown
    p = p.lstrip(" ")
    if not p[:1].isdigit():
        return unknown
    codenum, p = _extract_int(p)
    codenum %= 1 << 16                       # uint16_t codenum
    subcode = 0
    if p[:1] == ".":
        subcode, p = _extract_int(p[1:])
        subcode %= 1 << 8                    # uint8_t subcode
    p = p.lstrip(" ")
    args = p
    if letter == "M" and codenum in STRING_CODES:
        return Parsed(letter, codenum, subcode, {}, p, args)
    params: dict[str, str | None] = {}
    string_arg: str | None = None
    while p:
        param = upper(p[0])
        p = p[1:]
        if param == "!" and letter == "M" and codenum == 32:
            return Parsed(letter, codenum, subcode, params, p.split("#", 1)[0], args)
        if not faster or "A" <= param <= "Z":
            p = p.lstrip(" ")
            has_val = valid_float(p)
            if not has_val and string_arg is None:
                string_arg = param + p
            if faster:
                params[param] = p if has_val else None   # a repeated word: the last wins
        elif string_arg is None:
            string_arg = param + p
        if not ("A" <= p[:1] <= "Z"):
            p = p.lstrip("0123456789.+-").lstrip(" ")
    if not faster:  # the plain parser finds each letter with strchr: the first one wins
        for c in {upper(ch) for ch in args if upper(ch).isalpha()}:
            i = next(k for k, ch in enumerate(args) if upper(ch) == c)
            rest = args[i + 1:]
            params[c] = rest if valid_float(rest) else None
    return Parsed(letter, codenum, subcode, params, string_arg, args)


def value_float(ptr: str | None) -> float:
    """parser.value_float(): the text up to the first E, then strtof (which reads hex)."""
    if ptr is None:
        return 0.0
    cut = re.split("[Ee]", ptr, maxsplit=1)[0]
    m = _FLOAT_PREFIX.match(cut)
    if m is None:
        return 0.0
    text = m.group(0).strip()
    if text.lower().lstrip("+-").startswith("0x"):
        sign = -1.0 if text.startswith("-") else 1.0
        return sign * float.fromhex(text.lstrip("+-"))
    return float(text)


def value_long(ptr: str | None) -> int:
    """parser.value_long(): strtol base 10, saturating at 32 bits."""
    if ptr is None:
        return 0
    m = _LONG_PREFIX.match(ptr)
    if m is None:
        return 0
    return max(-(1 << 31), min((1 << 31) - 1, int(m.group(0))))


def value_int(ptr: str | None) -> int:
    """parser.value_int(): value_long cast to int16_t (it wraps)."""
    v = value_long(ptr) & 0xFFFF
    return v - (1 << 16) if v >= 1 << 15 else v


value_celsius = value_int  # without TEMPERATURE_UNITS_SUPPORT (the default)
