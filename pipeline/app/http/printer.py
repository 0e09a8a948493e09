"""OctoPrint-compatible endpoints for the server, connection, printer and job: what slicers
and Home Assistant call (ecosystem.md 6.3). Commands go through the pipeline tagged
`source:api`; a command the state forbids answers 409, a bad field 400 naming it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.control import Control, Status
from pipeline.app.http.bodies import command as _command
from pipeline.app.http.bodies import done as _done
from pipeline.app.http.bodies import field as _field
from pipeline.app.http.bodies import number as _number
from pipeline.app.http.context import api_of, identity_of
from pipeline.app.http.support import BadRequest, read_json
from pipeline.errors import HostError, ScriptError
from pipeline.link.transport import BAUD_CANDIDATES, candidate_ports
from pipeline.session.states import PrinterState as S

#: The OctoPrint version whose API printpipe answers as (clients compare it).
OCTOPRINT_API_LEVEL = "1.11.0"
API_TAGS = frozenset({"source:api", "trigger:api"})


def _operational(request: Request) -> Control:
    control = api_of(request).control
    if not control.operational:
        raise BadRequest("the printer is not operational", status=409)
    return control


def _send(control: Control, lines: list[str]) -> None:
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
        "feature": {"sdSupport": False, "temperatureGraph": False},
        "folder": {"uploads": api.storage.root},
        "gcodeAnalysis": {"runAt": "idle"},
        "plugins": {"discovery": {"upnpUuid": api.uuid}},
        "serial": {"port": api.config.printer.port, "baudrate": api.config.printer.baudrate},
        "webcam": {"webcamEnabled": False, "streamUrl": "", "snapshotUrl": "", "flipH": False,
                   "flipV": False, "rotate90": False, "bitrate": "", "snapshotSslValidation": True},
    })


async def login(request: Request) -> Response:
    body = await read_json(request) if await request.body() else {}
    if body.get("passive") is not True and "user" not in body:
        raise BadRequest("only passive login ({\"passive\": true}) is supported: "
                         "authenticate with an API key")
    name = identity_of(request)
    return JSONResponse({"name": name, "active": True, "admin": True, "user": True,
                         "groups": ["admins", "users"], "permissions": [],
                         "needs": {"role": ["admin", "user"]}, "roles": ["admin", "user"],
                         "apikey": None, "session": None, "_is_external_client": False,
                         "_login_mechanism": "apikey"})


# ---- connection ---------------------------------------------------------------------------
def _profile_id(request: Request) -> str:
    return "_default"


async def connection_get(request: Request) -> Response:
    api = api_of(request)
    p = api.config.printer
    status = api.control.status()
    connected = status.connected
    return JSONResponse({
        "current": {"state": status.state.value, "port": p.port if connected else None,
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
def _flags(state: S | None, error: bool) -> dict[str, bool]:
    return {"operational": state is not None and state not in (S.OFFLINE, S.CONNECTING, S.ERROR,
                                                               S.CLOSED_WITH_ERROR),
            "printing": state in (S.PRINTING, S.STARTING, S.FINISHING),
            "pausing": state is S.PAUSING, "paused": state is S.PAUSED,
            "cancelling": state is S.CANCELLING, "finishing": state is S.FINISHING,
            "resuming": state is S.RESUMING,
            "ready": state is S.OPERATIONAL,
            "error": state in (S.ERROR, S.CLOSED_WITH_ERROR) or error,
            "closedOrError": state in (None, S.OFFLINE, S.ERROR, S.CLOSED_WITH_ERROR) or error,
            "sdReady": False}


def printer_state(status: Status) -> dict[str, Any]:
    """OctoPrint's state object: its text, flags and the error, if any."""
    state = status.state if status.connected else None
    out: dict[str, Any] = {"text": status.state.value, "flags": _flags(state, False)}
    if status.error:
        out["error"] = status.error
    return out


async def printer_get(request: Request) -> Response:
    status = api_of(request).control.status()
    if not status.connected:
        raise BadRequest("the printer is not operational", status=409)
    out: dict[str, Any] = {"temperature": status.temperatures, "sd": {"ready": False},
                           "state": printer_state(status)}
    if status.plugins:
        out["plugins"] = status.plugins  # printer.additional_state_data
    exclude = {x.strip() for x in request.query_params.get("exclude", "").split(",")}
    return JSONResponse({k: v for k, v in out.items() if k not in exclude})


async def printer_command(request: Request) -> Response:
    body = await read_json(request)
    control = _operational(request)
    if "script" in body:
        name = _field(body, "script", str)
        context = _field(body, "context", dict, required=False, default={})
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
    params = _field(body, "parameters", dict, required=False, default={})
    if params:
        try:
            commands = [c.format(**params) for c in commands]
        except (KeyError, IndexError, ValueError) as exc:
            raise BadRequest(f"parameters do not fit the commands: {exc}") from None
    lines = [line for c in commands for line in c.splitlines() if line.strip()]
    _send(control, lines)
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
    if cmd in ("target", "offset"):
        values = _field(body, "targets" if cmd == "target" else "offsets", dict)
        for name, value in values.items():
            n = _tool_name(name)
            if n >= extruders:
                raise BadRequest(f"{name} does not exist (the profile has {extruders} tools)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(f"{name}: {value!r} is not a number")
        if cmd == "target":
            _send(control, [f"M104 T{_tool_name(k)} S{v:g}" for k, v in values.items()])
        else:
            control.set_temperature_offsets({k: float(v) for k, v in values.items()})
    elif cmd == "select":
        n = _tool_name(_field(body, "tool", str))
        if n >= extruders:
            raise BadRequest(f"tool{n} does not exist (the profile has {extruders} tools)")
        if control.status().printing:
            raise BadRequest("cannot change tools while printing", status=409)
        _send(control, [f"T{n}"])
    elif cmd == "extrude":
        amount = _number(body, "amount")
        speed = float(_field(body, "speed", (int, float), required=False, default=300))
        if control.status().printing:
            raise BadRequest("cannot extrude while printing", status=409)
        _send(control, ["G91", "M83", f"G1 E{amount:g} F{speed:g}", "M82", "G90"])
    else:
        factor = _number(body, "factor")
        _send(control, [f"M221 S{factor * 100 if factor <= 2 else factor:g}"])
    return _done()


async def bed(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = _command(body, ("target", "offset"))
    control = _operational(request)
    if not api.config.printer.profile.heated_bed:
        raise BadRequest("the printer profile has no heated bed", status=409)
    if cmd == "target":
        _send(control, [f"M140 S{_number(body, 'target'):g}"])
    else:
        control.set_temperature_offsets({"bed": _number(body, "offset")})
    return _done()


async def printhead(request: Request) -> Response:
    body = await read_json(request)
    cmd = _command(body, ("jog", "home", "feedrate"))
    control = _operational(request)
    if cmd != "feedrate" and control.status().printing:
        raise BadRequest(f"cannot {cmd} while printing", status=409)
    if cmd == "jog":
        moves = [f"{a.upper()}{float(_field(body, a, (int, float))):g}" for a in "xyz" if a in body]
        if not moves:
            raise BadRequest("jog needs at least one of x, y, z")
        absolute = _field(body, "absolute", bool, required=False, default=False)
        speed = _field(body, "speed", (int, float), required=False)
        move = "G1 " + " ".join(moves) + (f" F{speed:g}" if speed else "")
        _send(control, [move] if absolute else ["G91", move, "G90"])
    elif cmd == "home":
        axes = _field(body, "axes", list)
        if not axes or any(a not in ("x", "y", "z") for a in axes):
            raise BadRequest("axes must be a non-empty list of x, y, z")
        _send(control, ["G28 " + " ".join(f"{a.upper()}0" for a in axes)])
    else:
        factor = _number(body, "factor")
        _send(control, [f"M220 S{factor * 100 if factor <= 2 else factor:g}"])
    return _done()


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
    Route("/api/login", login, methods=["POST"]),
    Route("/api/connection", connection_get, methods=["GET"]),
    Route("/api/connection", connection_post, methods=["POST"]),
    Route("/api/printer", printer_get, methods=["GET"]),
    Route("/api/printer/command", printer_command, methods=["POST"]),
    Route("/api/printer/tool", tool, methods=["POST"]),
    Route("/api/printer/bed", bed, methods=["POST"]),
    Route("/api/printer/printhead", printhead, methods=["POST"]),
    Route("/api/printerprofiles", printer_profiles, methods=["GET"], name="printer_profiles"),
]
