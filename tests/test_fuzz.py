"""Property-based tests (hypothesis) for the inputs an attacker or a broken printer controls:
the G-code line model, the reply parser, the config loader, and whole sessions on the Pair,
whose wire must never carry anything unsafe, whatever the commands and files say.

Settings are derandomized (the same cases every run, so CI is repeatable) and keep no
example database. Each test says how many cases it runs.
"""

from __future__ import annotations

import math
import re

from conftest import load_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pairs import FAST, file_job, pair

from pipeline.config.reader import load_config
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.gcode import Command, param_value, strip_comment, tool_number
from pipeline.protocol import events as ee
from pipeline.protocol import replies
from pipeline.protocol.engine import HostProtocol
from pipeline.session.guard import HEATERS, TEXT_COMMANDS
from pipeline.session.states import PrinterState
from stages import stage_phases, stage_schemas

CASES = 200
FUZZ = settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SESSIONS = settings(FUZZ, max_examples=100)

# ---- what an input can be made of -------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: f"{v:g}"),
    st.sampled_from(["inf", "-inf", "INF", "nan", "NaN", "Infinity", "-Infinity", "1e400",
                     "99999999999999999999", "-0", "+5", ".5", "5.", "--3"]),
    st.integers(-1000, 1000).map(str))
WORDS = st.sampled_from(["G0", "G1", "G28", "G4", "M104", "M109", "M140", "M190", "M141",
                         "M191", "M106", "M117", "M118", "M221", "M220", "T0", "T1", "M112",
                         "M110", "@pause", "M0", "M25"])
PARAMS = st.tuples(st.sampled_from(list("XYZEFSRTPBN")), NUMBERS).map("".join)
COMMANDS = st.one_of(
    st.builds(lambda w, ps: " ".join([w, *ps]), WORDS, st.lists(PARAMS, max_size=4)),
    st.text(max_size=150),  # anything at all, control characters and all
    st.builds(lambda w, s: f"{w} {s}", WORDS, st.text(max_size=40)))


def wire_lines(p) -> list[bytes]:
    return [line for chunk in p.wire for line in chunk.split(b"\n") if line]


def unsafe(framed: bytes) -> str | None:
    """Why a framed line the host wrote is unsafe (the wire's view of the guard's rules)."""
    if len(framed) + 1 > 96:
        return "too long"
    text = framed.decode("ascii", "replace")
    body = re.sub(r"^N\d+ ", "", text).split("*")[0]
    if not body.isprintable():
        return "control character"
    word = body.split(" ")[0] if body else ""
    if word not in TEXT_COMMANDS and re.search(r"(?<![A-Za-z0-9])[A-Za-z]\s*[-+]?(inf|nan)",
                                               body, re.IGNORECASE):
        return "not finite"
    if word in HEATERS:
        kind, letters = HEATERS[word]
        limit = {"hotend": 300, "bed": 150, "chamber": 90}[kind]
        for letter in letters:
            value = param_value(body, letter)
            if value is not None and not (math.isfinite(value) and 0 <= value <= limit):
                return f"{letter}{value} over the {kind} limit"
    return None


# ---- the G-code line model --------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=200))
def test_the_line_model_takes_any_text(text):
    stripped = strip_comment(text)
    cmd = Command.parse(stripped)
    assert cmd.line == stripped
    for letter in "XYZESFT":
        value = param_value(stripped, letter)
        assert value is None or isinstance(value, float)
    assert tool_number(stripped) is None or tool_number(stripped) >= 0


# ---- the reply parser ---------------------------------------------------------------------------

REPLIES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(
        st.sampled_from([b"ok", b"ok T:20 /0", b"Resend: 3", b"rs N5", b"busy:processing",
                         b"Error:checksum mismatch, Last Line: 2", b"!! thermal runaway",
                         b"start", b"echo:T3 Invalid extruder", b"// action:pause",
                         b"Cap:AUTOREPORT_TEMP:1", b"FIRMWARE_NAME:Marlin",
                         b"X:1 Y:2 Z:3 E0:4 E1:5", b"T:inf /nan B:1e400"]),
        st.binary(max_size=40)), max_size=12).map(lambda ls: b"\n".join(ls) + b"\n"))


@FUZZ
@given(REPLIES, st.integers(1, 7))
def test_the_engine_takes_any_reply_bytes(data, pieces):
    e = HostProtocol()
    e.connect(0.0)
    e.receive_data(b"ok\n", 0.1)  # operational
    step = max(1, len(data) // pieces)
    known = set(ee.EngineEvent.__args__)  # type: ignore[attr-defined]
    for i in range(0, len(data), step):
        for ev in e.receive_data(data[i:i + step], 1.0 + i):
            assert type(ev) in known
    e.handle_timeout(1e6)


@FUZZ
@given(st.text(max_size=200))
def test_the_reply_classifiers_take_any_line(line):
    replies.parse_temperatures(line)
    replies.parse_position(line)
    replies.parse_resend(line)
    replies.parse_firmware_info(line)
    replies.parse_capability(line)
    replies.parse_action(line)
    replies.parse_invalid_tool(line)
    error = replies.error_text(line)
    if error is not None:
        replies.classify_error(error)


# ---- the config loader --------------------------------------------------------------------------

SECTIONS = ["printer", "serial", "virtual", "pipeline", "scripts", "events", "http", "storage"]
KEYS = ["port", "baudrate", "profile", "limits", "hotend", "send_window", "timeouts",
        "communication", "max_line_length", "faults", "seed", "subscriptions", "event",
        "command", "type", "host", "api_key", "comm.protocol.gcode.queuing", "stage",
        "handler", "with", "rules", "gcode"]
SCALARS = st.one_of(st.text(max_size=20), NUMBERS, st.sampled_from(["", "-", "[]", "{}", "~",
                                                                     "yes", "0x10", "\x00"]))


def _yaml_doc(section: str, pairs: list[tuple[str, str, str]]) -> str:
    body = "".join(f"  {k}:\n    {k2}: {v!s}\n" if k2 else f"  {k}: {v!s}\n"
                   for k, k2, v in pairs)
    return f"{section}:\n{body}"


YAML = st.one_of(
    st.text(max_size=300),
    st.builds(_yaml_doc, st.sampled_from(SECTIONS),
              st.lists(st.tuples(st.sampled_from(KEYS),
                                 st.one_of(st.just(""), st.sampled_from(KEYS)), SCALARS),
                       max_size=5)))


@FUZZ
@given(YAML)
def test_the_config_loader_answers_a_config_or_config_errors(text):
    errors: list[ConfigError] = []
    try:
        config = load_config(text, "fuzz.yaml", stage_schemas=stage_schemas(),
                             stage_phases=stage_phases())
    except ConfigErrors as exc:
        errors = exc.errors
    else:
        assert math.isfinite(config.printer.profile.limits.hotend)
        return
    assert errors and all(e.path == "fuzz.yaml" and str(e) for e in errors)


# ---- nothing unsafe reaches the wire ---------------------------------------------------------

@SESSIONS
@given(st.lists(COMMANDS, min_size=1, max_size=12))
def test_no_command_puts_anything_unsafe_on_the_wire(commands):
    p = pair(FAST)
    for command in commands:
        p.core.enqueue(command)
    p.run_until(lambda: p.core.idle or p.core.failed, max_time=1e7)  # dwells are long
    for framed in wire_lines(p):
        assert unsafe(framed) is None, framed


@SESSIONS
@given(st.lists(COMMANDS, min_size=1, max_size=25))
def test_no_printed_file_puts_anything_unsafe_on_the_wire(lines):
    p = pair(FAST)
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n"
    p.core.jobs.start(file_job(text))
    p.run_until(lambda: p.core.failed or p.core.state is PrinterState.PAUSED  # M25 pauses
                or (p.core.jobs.result is not None and p.core.state is PrinterState.OPERATIONAL),
                max_time=1e7)
    for framed in wire_lines(p):
        assert unsafe(framed) is None, framed


def test_the_wire_check_of_these_tests_bites():
    assert unsafe(b"N5 M104 S400*12") == "S400.0 over the hotend limit"
    assert unsafe(b"G1 Xinf") == "not finite"
    assert unsafe(b"M117 " + b"x" * 100) == "too long"
    assert unsafe(b"M117 a\x07") == "control character"
    assert load_yaml("") is not None
