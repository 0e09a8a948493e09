"""The wire's reading of G-code (pipeline/wire.py) and the guard on top of it
(pipeline/session/guard.py): respellings read as Marlin reads them, the canonical form, every
heater command checked, and a differential fuzz test against a model of Marlin's own parser
(tests/marlin_parser.py, written from Marlin's source): for every line the guard accepts, the
firmware reads from the wire exactly the command and values the guard checked."""

from __future__ import annotations

import math
import string

import marlin_parser as marlin
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.gcode import Command
from pipeline.session.guard import HEATERS, Refused, WireGuard
from pipeline.wire import SLOW, TEXT_COMMANDS, fast, read

GUARD = WireGuard(SerialSpec(), ProfileSpec())
LIMITS = GUARD.limits


def wire(line: str) -> str:
    return GUARD.canonical(line, Command.parse(line).gcode)


@pytest.mark.parametrize(("line", "canonical"), [
    ("G1 X10 Y20", "G1 X10 Y20"),
    ("g1 x10 y20", "G1 X10 Y20"),
    ("G01 X010.50 Y+3", "G1 X10.50 Y3"),
    ("G1X10Y20 E.5", "G1 X10 Y20 E0.5"),
    ("G1   X 10   Y 5.", "G1 X10 Y5"),
    ("G 1 X1", "G1 X1"),
    ("  N12 G1 X1", "G1 X1"),
    ("G28 X Y", "G28 X Y"),
    ("M104 S 200", "M104 S200"),
    ("m140 s60", "M140 S60"),
    ("G1 X1 ; a comment", "G1 X1"),
    ("G29.01 P1", "G29.1 P1"),
    ("G10 P0 S200:210 R150", "G10 P0 S200:210 R150"),
    ("T1", "T1"),
    ("M117 Hello   world ", "M117 Hello   world"),
    ("M117Layer 2", "M117 Layer 2"),
    ("M117 Größe", "M117 Gr??e"),
    ("M862.3 P \"MK4\"", "M862.3 P \"MK4\""),
    ("M115 U6.0.0", "M115 U6.0.0"),
    ("M810 G28|m104 s 200", "M810 G28|M104 S200"),
    ("M118 E1 ok", "M118 E1 ok"),
    ("M118 // action:pause", "M118 // action:pause"),
    ("M42 P4 S255 M1", "M42 P4 S255 M1"),
])
def test_lines_are_read_as_the_firmware_reads_them_and_written_canonically(line, canonical):
    assert wire(line) == canonical
    assert wire(canonical) == canonical  # the canonical form is a fixed point


@pytest.mark.parametrize(("line", "why"), [
    # respellings of a 400 °C target: every one is read, and refused
    ("M104 S400", "target 400 °C is above the hotend limit of 300 °C"),
    ("m104 s400", "target 400 °C"),
    ("M104 S 400", "target 400 °C"),
    ("M104S400", "target 400 °C"),
    ("M0104 S0400", "target 400 °C"),
    ("M 104 S400", "target 400 °C"),
    ("M104 S200 S400", "S is given twice"),
    ("M104 S400 S200", "S is given twice"),
    ("M104 T0 s200 S400", "S is given twice"),
    ("N5 M104 S400", "target 400 °C"),
    ("M104 S+400", "target 400 °C"),
    ("M104 S400.0", "target 400 °C"),
    ("M104 S0x190", "looks like a hex number"),
    ("M104 S4e2", "looks like an exponent"),
    ("M104 S1e+300", "looks like an exponent"),
    ("M104 S65936", "target 65936 °C"),           # int16: 400 to Marlin
    ("M104 S-65136", "S-65136 is not a temperature"),
    ("M104 S4000000000", "more than 9 digits"),
    ("M109 R400", "target 400 °C"),
    ("M104 B400", "target 400 °C"),              # autotemp maximum
    ("M140 S151", "above the bed limit of 150 °C"),
    ("M190 R200", "above the bed limit"),
    ("M141 S91", "above the chamber limit of 90 °C"),
    ("M191 S95", "above the chamber limit"),
    ("M145 S0 H400 B60", "target 400 °C"),        # a material preset
    ("M145 S1 H200 B200", "above the bed limit"),
    ("M303 E0 S400 C8", "target 400 °C"),         # PID autotune
    ("M303 E-1 S200 C8", "above the bed limit"),
    ("G10 P0 S200:400", "target 400 °C"),          # RepRapFirmware tool temperatures
    ("G10 P0 R400", "target 400 °C"),
    ("M568 P0 S400 R0", "target 400 °C"),
    ("M143 H1 S400", "target 400 °C"),             # RepRapFirmware heater limit
    ("M65640 S400", "not a command number"),      # uint16: M104 to Marlin
    ("M810 G28|M104 S400", "target 400 °C"),      # a macro runs later
    ("M42 I P4 S255", "M42 I drives a pin"),
    ("M43 T S0 L100", "M43 T toggles pins"),
    # numbers the firmware would read otherwise than the guard, or never should see
    ("G1 E1e9", "looks like an exponent"),
    ("G92 Z1e+20", "looks like an exponent"),
    ("G1 X10E5", "looks like an exponent"),
    ("G1 Xinf", "'Xinf' is not a finite number"),
    ("G1 X-Infinity", "'X-Inf' is not a finite number"),
    ("G0 Ynan", "'Ynan' is not a finite number"),
    ("G1 X1-2", "X1-2 is not a number"),
    ("G1 X1.2.3", "is not a number"),
    ("G1 X-", "X- is not a number"),
    ("G1 X.", "X. is not a number"),
    ("G28 XY", "put a space between words"),
    ("G1 X1 X2", "X is given twice"),
    # what is not one command
    ("G1 X1*57", "unexpected '*' after X1"),
    ("G1 X1 (comment)", "unexpected '('"),
    ("G1 X1 #5", "unexpected '#'"),
    ("M117 a*b", "checksum mark"),
    ("M117 a\\nb", "an escape"),
    ("M117 one\u2028M104 S400", "line separator"),
    ("M117 one\x85two", "line separator"),
    ("M117 one\x0bM104 S400", "control character"),
    ("G1 X1\x1cM104 S400", "control character"),
    ("PRINT_START BED=60", "is not a G-code command"),
    ("X10 Y10", "is not a G-code command"),
    ("T", "has no command number"),
    ("N10", "nothing follows the line number"),
    ("M118 ok", "flow control reply"),
    ("M118 P0 ok N12", "flow control reply"),
    ("M118 Resend: 3", "flow control reply"),
    ("M118 E1 busy: processing", "flow control reply"),
])
def test_what_could_be_read_two_ways_or_is_unsafe_is_refused_with_the_reason(line, why):
    with pytest.raises(Refused) as caught:
        wire(line)
    assert why in str(caught.value)


def test_a_canonical_plain_move_is_passed_as_the_very_same_object():
    line = "G1 X107.313 Y93.531 E0.0256 F1800"
    assert fast(line, "G1")
    assert GUARD.canonical(line, "G1") is line
    # what the fast test passes on is canonical and free of anything the guard reads
    assert not fast("M104 S200", "M104") and not fast("M117 X1", "M117")
    assert not fast("G1 X1 X2", "G1") and not fast("G1 X01", "G1") and not fast("g1", None)
    assert {"M104", "M109", "M140", "M190", "M141", "M191"} <= SLOW


# ---------------------------------------------------------------------------------------------
# The differential fuzz test: lines as an attacker would spell them.

_LETTERS = "SRBTEHXYZFIPCLN"
_numbers = st.one_of(
    st.integers(-70000, 70000).map(str),
    st.integers(0, 500).map(lambda n: f"{n:05d}"),                  # leading zeros
    st.floats(-1000, 1000, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["+400", ".5", "5.", "-0", "0x190", "0X1F4", "4e2", "1e+300", "1E9", "inf",
                     "-nan", "65936", "-65136", "4294967696", "400:200", "200:400", "1:2:3",
                     "--4", "+-4", "4.0.0", "", "-", "."]),
)
_spaces = st.sampled_from(["", " ", "  "])
_word = st.tuples(st.sampled_from(_LETTERS + _LETTERS.lower()), _spaces, _numbers, _spaces)
_codes = st.sampled_from(["104", "109", "140", "190", "141", "191", "145", "303", "143",
                          "568", "10", "1", "0104", "65640", "117", "118", "28", "92", "42"])
_junk = st.sampled_from(["", "", "", "", "*57", ";x", " (c)", "\\", "#", "\u2028", "\x0b",
                         "\x85", "|M104 S400"])


@st.composite
def hostile_lines(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["", "", " ", "N7 ", "n12 "]))
    letter = draw(st.sampled_from(["G", "M", "T", "g", "m", "t", "X", "@"]))
    code = draw(_codes)
    words = draw(st.lists(_word, max_size=4))
    body = "".join(f"{a}{b}{c}{d or ' '}" for a, b, c, d in words)
    return f"{head}{letter}{draw(_spaces)}{code}{draw(_spaces)}{body}{draw(_junk)}"


def _check_against_marlin(line: str, canonical: str) -> None:
    reading = read(canonical)
    assert canonical.isascii() and canonical.isprintable()
    for faster in (True, False):
        for any_case in (True, False):
            seen = marlin.parse(canonical, faster=faster, any_case=any_case)
            assert seen.command == reading.code
            base = reading.code.partition(".")[0]
            if base in TEXT_COMMANDS:
                if seen.letter == "M" and seen.codenum in marlin.STRING_CODES:
                    assert seen.string_arg == reading.text
                continue
            assert set(seen.params) == set(reading.words)
            for letter, values in reading.words.items():
                ptr = seen.params[letter]
                if values is None:
                    assert ptr is None
                    continue
                assert ptr is not None
                assert marlin.value_float(ptr) == pytest.approx(values[0], rel=1e-6, abs=1e-9)
                assert math.isfinite(values[0])
                if letter in HEATERS.get(base, ("", ""))[1] or (base, letter) in (
                        ("M145", "H"), ("M145", "B")):
                    c = marlin.value_celsius(ptr)
                    assert 0 <= c <= max(LIMITS.values())  # what Marlin sets is in range
    # the firmware's reading of what the client wrote is the guard's reading too
    original = marlin.parse(line.split(";")[0], faster=True, any_case=True)
    assert original.command == reading.code


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lines())
def test_the_firmware_reads_from_the_wire_exactly_what_the_guard_checked(line):
    try:
        canonical = wire(line)
    except Refused:
        return
    if line.lstrip(" ").startswith("@"):
        assert canonical == line  # a host command: never written (the send loop takes it)
        return
    _check_against_marlin(line, canonical)
    # no heater target over its limit survives, however it was spelled
    reading = read(canonical)
    base = reading.code.partition(".")[0]
    if base in HEATERS:
        for letter in HEATERS[base][1]:
            for v in reading.words.get(letter) or ():
                assert 0 <= v <= max(LIMITS.values())


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=string.printable + "\u2028\x85é", max_size=40))
def test_any_text_is_refused_or_canonical(text):
    try:
        canonical = wire(text)
    except Refused as exc:
        problem = str(exc)
        assert "\n" not in problem
        return
    if text.lstrip(" ").startswith("@"):
        return
    assert wire(canonical) == canonical
    _check_against_marlin(text, canonical)
