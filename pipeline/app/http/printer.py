"""OctoPrint-compatible endpoints for the server, connection, printer and job: what slicers
and Home Assistant call (ecosystem.md 6.3). Commands go through the pipeline tagged
`source:api`; a command the state forbids answers 409, a bad field 400 naming it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.bodies import Range, command_lines, finite, parameters, script_context
from pipeline.app.http.bodies import command as _command
from pipeline.app.http.bodies import done as _done
from pipeline.app.http.bodies import field as _field
from pipeline.app.http.bodies import gcode_number as _g
from pipeline.app.http.bodies import number as _number
from pipeline.app.http.bodies import percentage as _percentage
from pipeline.app.http.camera.timelapse import webcam_settings
from pipeline.app.http.context import api_of
from pipeline.app.http.support import BadRequest, read_json
from pipeline.app.printers.control import MAX_TEMPERATURE_OFFSET, PrinterControl
from pipeline.app.printers.status import Status
from pipeline.errors import HostError, ScriptError
from pipeline.link.transport import BAUD_CANDIDATES, candidate_ports
from pipeline.session.states import PrinterState as S

#: The OctoPrint version whose API printpipe answers as (clients compare it).
OCTOPRINT_API_LEVEL = "1.11.0"
API_TAGS = frozenset({"source:api", "trigger:api"})

#: What the printer endpoints take (README, "HTTP API"). Heater targets: the heaters' own
#: limits are the session's, at the wire; this only keeps nonsense from getting that far.
TEMPERATURE = Range(0, 1000)
OFFSET = Range(-MAX_TEMPERATURE_OFFSET, MAX_TEMPERATURE_OFFSET)  # OctoPrint's
DISTANCE = Range(-1000, 1000)            # mm: jog moves and coordinates, extrude amounts
SPEED = Range(1, 100_000)                # mm/min: jog and extrude feed rates
#: The extrude speed when the body gives none (mm/min), as before: OctoPrint's default profile.
EXTRUDE_SPEED = 300.0


def _operational(request: Request) -> PrinterControl:
    control = api_of(request).control
    if not control.operational:
        raise BadRequest("the printer is not operational", status=409)
    return control


def _send(control: PrinterControl, lines: list[str]) -> None:
    control.send(lines, API_TAGS)


# ---- server -----------------------------------------------------------------------------
async def version(request: Request) -> Response:
    v = api_of(request).version
    return JSONResponse({"api": "0.1", "server": OCTOPRINT_API_LEVEL,
                         "text": f"OctoPrint (printpipe {v})"})


async def server(request: Request) -> Response:
    return JSONResponse({"version": OCTOPRINT_API_LEVEL, "safemode": None})


async def settings(request: Request) -> Response:
    api = api_of(request)
    return JSONResponse({
        "api": {"allowCrossOrigin": False},
        "appearance": {"name": "printpipe"},
        "feature": {"sdSupport": api.control.sd.enabled, "temperatureGraph": False},
        "folder": {"uploads": api.storage.root},
        "gcodeAnalysis": {"runAt": "idle"},
        "plugins": {"discovery": {"upnpUuid": api.uuid}},
        "serial": {"port": api.config.printer.port, "baudrate": api.config.printer.baudrate},
        "webcam": webcam_settings(api.control.camera),
    })


# ---- connection ---------------------------------------------------------------------------
def _profile_id(request: Request) -> str:
    return "_default"


async def connection_get(request: Request) -> Response:
    api = api_of(request)
    p = api.config.printer
    status = api.control.status()
    connected = status.connected
    return JSONResponse({
        # OctoPrint says "Closed" here while its printer state says "Offline"; a service that
        # waits for its printer says what for ("Closed: waiting for /dev/ttyACM0 ...")
        "current": {"state": (status.state.value if connected else "Closed")
                             + (f": {status.waiting}" if status.waiting else ""),
                    "port": p.port if connected else None,
                    "baudrate": (p.baudrate or 115200) if connected else None,
                    "printerProfile": _profile_id(request)},
        "options": {"ports": ["virtual", "auto", *candidate_ports()] if p.port == "virtual"
                    else ["auto", *candidate_ports()],
                    "baudrates": list(BAUD_CANDIDATES),
                    "printerProfiles": [{"id": "_default", "name": p.profile.name}],
                    "portPreference": p.port, "baudratePreference": p.baudrate or None,
                    "printerProfilePreference": "_default", "autoconnect": True},
    })


async def connection_post(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = _command(body, ("connect", "disconnect", "fake_ack"))
    if cmd == "connect":
        for key, kind in (("port", str), ("baudrate", int), ("printerProfile", str)):
            _field(body, key, kind, required=False)
        port = body.get("port")
        if port not in (None, api.config.printer.port, "auto"):
            raise BadRequest(f"port {port!r} is not the configured one "
                             f"({api.config.printer.port}); change printer.port in the config")
        if api.control.connected or api.control.connecting:
            raise BadRequest("the printer is already connected or connecting", status=409)
        try:
            await api.control.connect()
        except HostError as exc:  # the link's own error text says what failed
            raise BadRequest(f"connecting failed: {exc}", status=409) from None
    elif cmd == "disconnect":
        await api.control.disconnect()
    return _done()


# ---- printer ------------------------------------------------------------------------------
def _flags(state: S | None, error: bool, sd_ready: bool = False) -> dict[str, bool]:
    return {"operational": state is not None and state not in (S.OFFLINE, S.CONNECTING, S.ERROR,
                                                               S.CLOSED_WITH_ERROR),
            "printing": state in (S.PRINTING, S.STARTING, S.FINISHING),
            "pausing": state is S.PAUSING, "paused": state is S.PAUSED,
            "cancelling": state is S.CANCELLING, "finishing": state is S.FINISHING,
            "resuming": state is S.RESUMING,
            "ready": state is S.OPERATIONAL,
            "error": state in (S.ERROR, S.CLOSED_WITH_ERROR) or error,
            "closedOrError": state in (None, S.OFFLINE, S.ERROR, S.CLOSED_WITH_ERROR) or error,
            "sdReady": sd_ready}


def printer_state(status: Status, sd_ready: bool = False) -> dict[str, Any]:
    """OctoPrint's state object: its text, flags and the error ("" when there is none)."""
    state = status.state if status.connected else None
    return {"text": status.state.value, "flags": _flags(state, False, sd_ready),
            "error": status.error or ""}


async def printer_get(request: Request) -> Response:
    """OctoPrint's printer state: heaters once the printer reported them (none before its
    first temperature report), `sd: {ready}` when SD support is on (OctoPrint leaves it out
    otherwise), the state with its flags."""
    control = api_of(request).control
    status = control.status()
    if not status.connected:
        raise BadRequest("the printer is not operational", status=409)
    sd = control.sd
    out: dict[str, Any] = {"temperature": status.temperatures,
                           "state": printer_state(status, sd.ready)}
    if sd.enabled:
        out["sd"] = {"ready": sd.ready}
    if status.plugins:
        out["plugins"] = status.plugins  # printer.additional_state_data
    exclude = {x.strip() for x in request.query_params.get("exclude", "").split(",")}
    return JSONResponse({k: v for k, v in out.items() if k not in exclude})


async def printer_command(request: Request) -> Response:
    body = await read_json(request)
    control = _operational(request)
    if "script" in body:
        name = _field(body, "script", str)
        context = script_context(body)
        try:
            control.run_script(name, context, trigger="trigger:api")
        except LookupError as exc:
            raise BadRequest(str(exc.args[0]), status=404) from None
        except ScriptError as exc:
            raise BadRequest(str(exc)) from None
        return _done()
    if "commands" in body:
        commands = _field(body, "commands", list)
    else:
        commands = [_field(body, "command", str)]
    if not all(isinstance(c, str) for c in commands):
        raise BadRequest("commands must be a list of strings")
    # the config's serial line limit where it has one (a field still to come), else ours
    # a first, cheap bound; the wire guard measures the line with its framing (PrinterControl.send)
    limit = control.config.serial.max_line_length
    _send(control, command_lines(commands, parameters(body), limit))
    return _done()


def _tool_name(name: Any) -> int:
    # ASCII digits only, and few: int() refuses "²" and over 4300 digits (a 500 otherwise)
    if (not isinstance(name, str) or not name.startswith("tool") or not name[4:].isdigit()
            or not name[4:].isascii() or len(name) > 12):
        raise BadRequest(f"{name!r} is not a tool name (tool0, tool1, ...)")
    return int(name[4:])


async def tool(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = _command(body, ("target", "offset", "select", "extrude", "flowrate"))
    control = _operational(request)
    extruders = api.config.printer.profile.extruders
    if cmd == "target":
        targets = tool_values(body, "targets", TEMPERATURE, extruders)
        _send(control, [f"M104 T{n} S{_g(v)}" for n, v in targets.items()])
    elif cmd == "offset":
        offsets = tool_values(body, "offsets", OFFSET, extruders)
        control.set_temperature_offsets({f"tool{n}": v for n, v in offsets.items()})
    elif cmd == "select":
        n = _tool_name(_field(body, "tool", str))
        if n >= extruders:
            raise BadRequest(f"tool{n} does not exist (the profile has {extruders} tools)")
        if control.status().printing:
            raise BadRequest("cannot change tools while printing", status=409)
        _send(control, [f"T{n}"])
    elif cmd == "extrude":
        lines = extrude_lines(body)
        if control.status().printing:
            raise BadRequest("cannot extrude while printing", status=409)
        _send(control, lines)
    else:
        _send(control, [f"M221 S{_percentage(body, 'factor')}"])
    return _done()


def tool_values(body: dict[str, Any], key: str, allowed: Range,
                extruders: int) -> dict[int, float]:
    """`body[key]`, `{"tool0": number, ...}`, by tool number: every name an existing tool,
    every value a number in `allowed`, or a BadRequest before anything is done."""
    values: dict[int, float] = {}
    for name, value in _field(body, key, dict).items():
        n = _tool_name(name)
        if n >= extruders:
            raise BadRequest(f"{name} does not exist (the profile has {extruders} tools)")
        values[n] = finite(value, f"{key}.{name}", allowed)
    return values


def extrude_lines(body: dict[str, Any]) -> list[str]:
    """The relative extrude move of an `extrude` body, `amount` mm at `speed` mm/min."""
    amount = _number(body, "amount", DISTANCE)
    speed = _number(body, "speed", SPEED, default=EXTRUDE_SPEED)
    return ["G91", "M83", f"G1 E{_g(amount)} F{_g(speed)}", "M82", "G90"]


async def bed(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = _command(body, ("target", "offset"))
    control = _operational(request)
    if not api.config.printer.profile.heated_bed:
        raise BadRequest("the printer profile has no heated bed", status=409)
    if cmd == "target":
        _send(control, [f"M140 S{_g(_number(body, 'target', TEMPERATURE))}"])
    else:
        control.set_temperature_offsets({"bed": _number(body, "offset", OFFSET)})
    return _done()


async def printhead(request: Request) -> Response:
    body = await read_json(request)
    cmd = _command(body, ("jog", "home", "feedrate"))
    control = _operational(request)
    if cmd != "feedrate" and control.status().printing:
        raise BadRequest(f"cannot {cmd} while printing", status=409)
    if cmd == "jog":
        _send(control, jog_lines(body))
    elif cmd == "home":
        axes = _field(body, "axes", list)
        if not axes or any(a not in ("x", "y", "z") for a in axes):
            raise BadRequest("axes must be a non-empty list of x, y, z")
        _send(control, ["G28 " + " ".join(f"{a.upper()}0" for a in axes)])
    else:
        _send(control, [f"M220 S{_percentage(body, 'factor')}"])
    return _done()


def jog_lines(body: dict[str, Any]) -> list[str]:
    """The move of a `jog` body: x, y, z in mm (relative unless `absolute`), `speed` in
    mm/min; no F when it is absent, null or false (OctoPrint's "no speed")."""
    moves = [f"{a.upper()}{_g(_number(body, a, DISTANCE))}" for a in "xyz" if a in body]
    if not moves:
        raise BadRequest("jog needs at least one of x, y, z")
    absolute = _field(body, "absolute", bool, required=False, default=False)
    speed = body.get("speed")
    if speed is not None and speed is not False:
        moves.append(f"F{_g(_number(body, 'speed', SPEED))}")
    move = "G1 " + " ".join(moves)
    return [move] if absolute else ["G91", move, "G90"]


async def printer_profiles(request: Request) -> Response:
    p = api_of(request).config.printer.profile
    axis = {"speed": 6000, "inverted": False}
    return JSONResponse({"profiles": {"_default": {
        "id": "_default", "name": p.name, "model": p.name, "color": "default",
        "current": True, "default": True, "resource": str(request.url_for("printer_profiles")),
        "heatedBed": p.heated_bed, "heatedChamber": p.heated_chamber,
        "volume": {"width": p.volume.width, "depth": p.volume.depth, "height": p.volume.height,
                   "formFactor": "rectangular", "origin": "lowerleft"},
        "axes": {"x": axis, "y": axis, "z": {"speed": 200, "inverted": False},
                 "e": {"speed": 300, "inverted": False}},
        "extruder": {"count": p.extruders, "sharedNozzle": p.shared_nozzle,
                     "nozzleDiameter": 0.4, "offsets": [[0.0, 0.0]] * p.extruders},
    }}})


ROUTES = [
    Route("/api/version", version, methods=["GET"]),
    Route("/api/server", server, methods=["GET"]),
    Route("/api/settings", settings, methods=["GET"]),
    Route("/api/connection", connection_get, methods=["GET"]),
    Route("/api/connection", connection_post, methods=["POST"]),
    Route("/api/printer", printer_get, methods=["GET"]),
    Route("/api/printer/command", printer_command, methods=["POST"]),
    Route("/api/printer/tool", tool, methods=["POST"]),
    Route("/api/printer/bed", bed, methods=["POST"]),
    Route("/api/printer/printhead", printhead, methods=["POST"]),
    Route("/api/printerprofiles", printer_profiles, methods=["GET"], name="printer_profiles"),
]
