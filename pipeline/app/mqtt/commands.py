"""Commands in over MQTT (opt-in): `<base>command/gcode` (one G-code command per line, queued
through the pipeline tagged `source:mqtt`, under the API's safety rules) and `<base>command/job`
(start, pause, resume, toggle, cancel, restart). Every command is answered on
`<base>command/reply` with whether it was done and, if not, the one-line reason.

A command is a message published now: a retained one (the broker hands it to every new
subscription, so after each reconnect) is never run, only answered, and the bridge clears it.
Payloads are bounded in size and JSON nesting. Parsing is pure; `run_command` drives the
printer only through `PrinterControl`. A bad payload is a refused command, never an exception out of
here.
"""

from __future__ import annotations

import attrs

from pipeline.app.http.support import BadRequest, parse_json
from pipeline.app.mqtt.topics import Message, Topics, stamped
from pipeline.app.printers.control import PrinterControl
from pipeline.config.mqtt import MqttSpec
from pipeline.errors import HostError
from pipeline.gcode import split_lines

MQTT_TAGS = frozenset({"source:mqtt", "trigger:mqtt"})
JOB_ACTIONS = ("start", "pause", "resume", "toggle", "cancel", "restart")
#: The most commands one gcode message may carry, and bytes of the command echoed in a reply.
MAX_LINES = 100
ECHO = 200
#: The largest command payload (bytes) and the deepest JSON nesting of a job command.
MAX_PAYLOAD = 16 * 1024
MAX_DEPTH = 4
RETAINED = ("a retained command is never run (it would run again at every reconnect); it was "
            "cleared: publish commands without the retain flag")


@attrs.frozen
class Reply:
    ok: bool
    message: str


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the payload is not UTF-8 text") from None


def gcode_lines(payload: bytes) -> list[str]:
    """The commands of a gcode message: one per line, blank lines skipped."""
    lines = [line.strip() for line in split_lines(_text(payload))]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("no command in the payload (one G-code command per line)")
    if len(lines) > MAX_LINES:
        raise ValueError(f"{len(lines)} commands in one message: at most {MAX_LINES}")
    return lines


def job_action(payload: bytes) -> str:
    """The job action: a bare word (`pause`) or OctoPrint's body (`{"command": "pause"}`, or
    `{"command": "pause", "action": "resume"}`)."""
    text = _text(payload).strip()
    word = text.lower()
    if text.startswith("{"):
        try:
            body = parse_json(text, MAX_DEPTH)
        except BadRequest as exc:  # malformed, nested too deeply, a lone surrogate
            raise ValueError(exc.message) from None
        command = body.get("command") if isinstance(body, dict) else None
        if not isinstance(command, str):
            raise ValueError('a JSON job command needs "command" (a string)')
        word = command.lower()
        if word == "pause":
            word = body.get("action", "toggle")
            if word not in ("pause", "resume", "toggle"):
                raise ValueError('"action" must be pause, resume or toggle')
    if word not in JOB_ACTIONS:
        raise ValueError(f"unknown job command {word[:40]!r} ({', '.join(JOB_ACTIONS)})")
    return word


def refusal(payload: bytes, retained: bool) -> str | None:
    """Why a message must not run whatever it says, or None."""
    if retained:
        return RETAINED
    if len(payload) > MAX_PAYLOAD:
        return f"the payload is {len(payload)} bytes: a command may have {MAX_PAYLOAD}"
    return None


async def run_command(control: PrinterControl, topics: Topics, topic: str, payload: bytes) -> Reply:
    """Do what a message on a command topic asks; the reply says what happened."""
    try:
        if topic == topics.gcode:
            lines = gcode_lines(payload)
            count = control.send(lines, MQTT_TAGS)
            return Reply(True, f"queued {count} command{'s' * (count != 1)}")
        if topic == topics.job:
            action = job_action(payload)
            if action == "start":
                await control.start(user="mqtt")
            elif action == "restart":
                await control.restart(user="mqtt")
            else:
                {"pause": control.pause, "resume": control.resume,
                 "toggle": control.toggle_pause, "cancel": control.cancel}[action]()
            return Reply(True, action)
        return Reply(False, f"unknown command topic {topic}")
    except (ValueError, HostError) as exc:  # CommandRefused, JobStateError, ...
        return Reply(False, " ".join(str(exc).split()) or type(exc).__name__)


def reply_message(spec: MqttSpec, topic: str, payload: bytes, reply: Reply,
                  timestamp: float) -> Message:
    """The answer on `<base>command/reply`, naming the command it answers."""
    body = {"topic": topic, "command": payload[:ECHO].decode("utf-8", "replace"),
            "ok": reply.ok, ("result" if reply.ok else "error"): reply.message}
    return Message(Topics(spec.base_topic).reply, stamped(body, timestamp), qos=spec.qos)
