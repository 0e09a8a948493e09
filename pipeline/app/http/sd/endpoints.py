"""The printer's SD card over OctoPrint's API: `/api/printer/sd` (its state; init, refresh,
release), `/api/files/sdcard` (its files; an upload stores the file locally, then copies it
to the card) and one file's info, select (and print) and delete. The card and its rules are
the control surface's (`control.sd`); a request its state forbids answers 409, an unknown
file 404, and with SD support off (`serial.sd.enabled`) these answer 404 as OctoPrint's.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.bodies import command, done, field
from pipeline.app.http.context import api_of, identity_of
from pipeline.app.http.files import add_upload, local_listing, storage_errors
from pipeline.app.http.support import BadRequest, read_json, receive_upload
from pipeline.app.printers.sdcard import SdControl
from pipeline.files.names import TEMP_PREFIX
from pipeline.session.jobs import JobStateError
from pipeline.session.sd.card import SdEntry

ORIGIN = "sdcard"


def _sd(request: Request) -> SdControl:
    sd = api_of(request).control.sd
    if not sd.enabled:
        raise BadRequest("SD support is off (serial.sd.enabled)", status=404)
    return sd


def sd_entry(request: Request, entry: SdEntry) -> dict[str, Any]:
    """OctoPrint's listing of a file on the card: no date, no download."""
    return {"type": "machinecode", "typePath": ["machinecode", "gcode"], "name": entry.path,
            "display": entry.display or entry.path, "path": entry.path, "origin": ORIGIN,
            "size": entry.size,
            "refs": {"resource": f"{request.base_url}api/files/{ORIGIN}/{quote(entry.path)}"}}


def sd_listing(request: Request) -> list[dict[str, Any]]:
    """The card's files as `/api/files` lists them (none when it is not ready or off)."""
    sd = api_of(request).control.sd
    return [sd_entry(request, e) for e in sd.files] if sd.enabled else []


def _refused(exc: Exception) -> BadRequest:
    if isinstance(exc, LookupError):
        return BadRequest(str(exc.args[0]), status=404)
    return BadRequest(str(exc), status=409)


# ---- /api/printer/sd -------------------------------------------------------------------------
async def sd_get(request: Request) -> Response:
    return JSONResponse({"ready": _sd(request).ready})


async def sd_post(request: Request) -> Response:
    sd = _sd(request)
    cmd = command(await read_json(request), ("init", "refresh", "release"))
    try:
        {"init": sd.init, "refresh": sd.refresh, "release": sd.release}[cmd]()
    except JobStateError as exc:
        raise _refused(exc) from None
    return done()


# ---- /api/files/sdcard -----------------------------------------------------------------------
async def list_all(request: Request) -> Response:
    """`/api/files`: the stored files, then the card's."""
    body = await local_listing(request)
    body["files"] += sd_listing(request)
    return JSONResponse(body)


async def list_sd(request: Request) -> Response:
    _sd(request)
    return JSONResponse({"files": sd_listing(request)})


def _file(request: Request, sd: SdControl) -> SdEntry:
    name = request.path_params["path"]
    entry = sd.find(name)
    if entry is None:
        raise BadRequest(f"no file {name!r} on the SD card", status=404)
    return entry


async def sd_info(request: Request) -> Response:
    return JSONResponse(sd_entry(request, _file(request, _sd(request))))


async def sd_command(request: Request) -> Response:
    sd = _sd(request)
    body = await read_json(request)
    command(body, ("select",))
    want_print = field(body, "print", bool, required=False, default=False)
    entry = _file(request, sd)
    try:
        sd.select(entry.path, print_after=want_print, user=identity_of(request))
    except (JobStateError, LookupError) as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


async def sd_delete(request: Request) -> Response:
    sd = _sd(request)
    entry = _file(request, sd)
    try:
        sd.delete(entry.path)
    except (JobStateError, LookupError) as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


async def sd_upload(request: Request) -> Response:
    """Store the uploaded file locally (as `/api/files/local` does), then start copying it to
    the card: 201 with both entries and `done: false` (TransferDone tells the end)."""
    api = api_of(request)
    sd = _sd(request)
    if not sd.ready:
        raise BadRequest("cannot upload to the SD card: it is not ready", status=409)
    form = await receive_upload(request, api.storage.root, prefix=TEMP_PREFIX)
    try:
        if form.temp_path is None:
            raise BadRequest("the form has no 'file' part (folders cannot go to the SD card)")
        fields = {k: v for k, v in form.fields.items() if k not in ("select", "print")}
        stored = await add_upload(request, api, form.filename, form.temp_path, fields)
    finally:
        form.discard()
    body = json.loads(bytes(stored.body))
    local = body["files"]["local"]
    with storage_errors():
        disk = api.storage.locate(local["path"])[1]
    try:
        remote = await sd.upload(disk, name=local["display"])
    except JobStateError as exc:
        raise BadRequest(f"stored as {local['path']!r} but not uploaded to the SD card: {exc}",
                         status=409) from None
    body["files"][ORIGIN] = {"name": remote, "path": remote, "display": remote,
                             "origin": ORIGIN, "refs": {
                                 "resource": f"{request.base_url}api/files/{ORIGIN}/"
                                             f"{quote(remote)}"}}
    body["done"] = False
    return JSONResponse(body, status_code=201,
                        headers={"Location": body["files"][ORIGIN]["refs"]["resource"]})


ROUTES: list[Route] = [  # before files.ROUTES: theirs take any location
    Route("/api/files", list_all, methods=["GET"]),
    Route("/api/printer/sd", sd_get, methods=["GET"]),
    Route("/api/printer/sd", sd_post, methods=["POST"]),
    Route(f"/api/files/{ORIGIN}", list_sd, methods=["GET"]),
    Route(f"/api/files/{ORIGIN}", sd_upload, methods=["POST"]),
    Route(f"/api/files/{ORIGIN}/{{path:path}}", sd_info, methods=["GET"]),
    Route(f"/api/files/{ORIGIN}/{{path:path}}", sd_command, methods=["POST"]),
    Route(f"/api/files/{ORIGIN}/{{path:path}}", sd_delete, methods=["DELETE"]),
]
